"""``python -m chat_client.cli`` driven through a pipe, chatting with an SDK user."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from chat_client import MessageReceived
from tests.client.helpers import PASSWORD, AccountFactory, Collector, Urls, confirmed


class CliProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: list[str] = []

    async def write(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def expect(self, text: str, seconds: float = 15.0) -> str:
        """The first output line containing ``text``, waiting for it if need be (the
        order of lines from the event stream and from commands is not fixed)."""
        assert self.process.stdout is not None
        for line in self.output:
            if text in line:
                return line
        try:
            async with asyncio.timeout(seconds):
                while True:
                    raw = await self.process.stdout.readline()
                    if not raw:
                        raise AssertionError(f"cli exited before printing {text!r}")
                    line = raw.decode().rstrip("\n")
                    self.output.append(line)
                    if text in line:
                        return line
        except TimeoutError:
            raise AssertionError(f"no {text!r} in cli output: {self.output}") from None


async def test_cli_lists_opens_sends_and_shows_live_messages(
    accounts: AccountFactory, urls: Urls, tmp_path: Path
) -> None:
    alice, bob = await asyncio.gather(accounts.new(), accounts.new())
    chat = await bob.client.create_direct(alice.id)
    await bob.client.post_message(chat.id, "before you came")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chat_client.cli",
        "--auth-url",
        urls.auth,
        "--history-url",
        urls.history,
        "--gateway-url",
        urls.gateway,
        "--username",
        alice.username,
        "--state",
        str(tmp_path / "alice-cli.json"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CHAT_CLI_PASSWORD": PASSWORD},
    )
    cli = CliProcess(process)
    try:
        async with bob.client.connect() as bob_session:
            bob_sees = Collector(bob_session)
            await asyncio.wait_for(bob_session.wait_connected(), 10)

            await cli.expect(f"logged in as {alice.username}")
            listed = await cli.expect("1 unread")
            assert bob.username in listed and "direct" in listed
            await cli.expect("-- connected")

            await cli.write(f"/open {bob.username}")
            await cli.expect(f"{bob.username}: before you came")
            await cli.write("hello from the cli")
            await bob_sees.wait_until(
                lambda: any(m.body == "hello from the cli" for m in bob_sees.messages),
                "the cli's message",
            )
            from_cli = [m for m in bob_sees.messages if m.body == "hello from the cli"]
            assert [(m.sender_id, m.conversation_id) for m in from_cli] == [(alice.id, chat.id)]

            await confirmed(bob_session, chat.id, "hi cli")
            await cli.expect(f"{bob.username}: hi cli")
            live = [e for e in bob_sees.events if isinstance(e, MessageReceived)]
            assert live and all(e.source == "live" for e in live)
            await bob_sees.stop()

        assert process.stdin is not None
        process.stdin.close()  # end of input: the cli leaves once its sends are confirmed
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (tmp_path / "alice-cli.json").exists()
