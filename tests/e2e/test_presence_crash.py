"""A gateway that dies takes its users offline by itself (no one stays online forever)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.stack import start_stack
from tests.support.wsclient import ChatSocket

pytestmark = pytest.mark.slow

TIMEOUT = 3.0


async def test_users_of_a_killed_gateway_go_offline(tmp_path: Path) -> None:
    running = start_stack(tmp_path, gateways=2, env={"CHAT_PRESENCE_TIMEOUT": str(TIMEOUT)})
    try:
        alice, bob = await running.users(2)
        await running.conversation(alice, [bob], kind="direct")
        watcher = await ChatSocket.open(running.ws_urls[1], alice.token)
        await watcher.start()
        doomed = await ChatSocket.open(running.ws_urls[0], bob.token)
        await doomed.start()
        online = await watcher.expect("presence", timeout=2)
        assert (online["user_id"], online["status"]) == (bob.id, "online")

        running.gateways[0].kill()
        killed_at = time.monotonic()
        deadline = killed_at + TIMEOUT + 5
        offline = None
        while time.monotonic() < deadline:
            await watcher.send(type="ping")
            frame = await watcher.recv(timeout=deadline - time.monotonic())
            if frame["type"] == "presence":
                offline = frame
                break
        assert offline is not None, "bob stayed online after his gateway died"
        assert (offline["user_id"], offline["status"]) == (bob.id, "offline")
        assert time.monotonic() - killed_at <= TIMEOUT + 5
        await watcher.close()
    finally:
        running.stack.stop()
