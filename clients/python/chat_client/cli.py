"""``chat-cli``: a terminal chat for trying the system without a browser.

    chat-cli --username alice            # log in (the password is asked for)
    chat-cli --signup --username alice --email alice@example.com

Reads commands and messages from stdin line by line (a thread feeds them to the event
loop, so piping a script in works too) and prints messages as they arrive. The device
state is kept in a file, so the next run resumes where this one stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import os
import sys
import threading
from pathlib import Path

from chat_client.client import (
    DEFAULT_AUTH_URL,
    DEFAULT_GATEWAY_URL,
    DEFAULT_HISTORY_URL,
    ChatClient,
)
from chat_client.errors import ChatClientError
from chat_client.terminal import Terminal

PASSWORD_ENV = "CHAT_CLI_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chat-cli",
        description="Terminal chat client. Type /help once connected.",
    )
    parser.add_argument("--auth-url", default=DEFAULT_AUTH_URL, help="auth service base URL")
    parser.add_argument(
        "--history-url", default=DEFAULT_HISTORY_URL, help="history service base URL"
    )
    parser.add_argument(
        "--gateway-url", default=DEFAULT_GATEWAY_URL, help="chat gateway base URL (http or ws)"
    )
    parser.add_argument("--username", help="username, or email to log in with")
    parser.add_argument(
        "--password",
        help=f"password (prefer the {PASSWORD_ENV} variable or the prompt: "
        "arguments are visible to other users of the machine)",
    )
    parser.add_argument("--signup", action="store_true", help="create the account first")
    parser.add_argument("--email", help="email for --signup")
    parser.add_argument(
        "--state",
        type=Path,
        help="device state file (default: one per user and server under $XDG_STATE_HOME/chat-cli)",
    )
    parser.add_argument("--open", dest="open_target", help="conversation to open: N or NAME")
    return parser.parse_args(argv)


def _ask(prompt: str, secret: bool = False) -> str:
    """A line from the user: a prompt on a terminal, the next stdin line in a pipe."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt) if secret else input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(f"chat-cli: stdin ended while asking for {prompt.strip(': ')}")
    return line.rstrip("\n")


def default_state_file(username: str, gateway_url: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    server = hashlib.sha256(gateway_url.encode()).hexdigest()[:10]
    safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in username)
    return base / "chat-cli" / f"{safe_name}-{server}.json"


def _start_stdin_reader(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines of stdin on a queue; None at the end. A daemon thread does the blocking
    reads so the event loop keeps printing incoming messages meanwhile."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="chat-cli-stdin", daemon=True).start()
    return lines


def say(text: str) -> None:
    print(text, flush=True)


async def run(args: argparse.Namespace) -> int:
    username = args.username or _ask("username: ")
    password = args.password or os.environ.get(PASSWORD_ENV) or _ask("password: ", secret=True)
    async with ChatClient(
        auth_url=args.auth_url, history_url=args.history_url, gateway_url=args.gateway_url
    ) as client:
        try:
            if args.signup:
                email = args.email or _ask("email: ")
                user = await client.signup(username, email, password)
                say(f"-- signed up as {user.username}")
            await client.login(username, password)
            me = await client.me()
        except ChatClientError as exc:
            say(f"! {exc}")
            return 1
        say(f"-- logged in as {me.username} (/help lists the commands)")
        state_file = args.state or default_state_file(me.username, args.gateway_url)
        lines = _start_stdin_reader(asyncio.get_running_loop())
        async with client.connect(state_file=state_file) as session:
            terminal = Terminal(client, session, say)
            try:
                return await terminal.run(lines, args.open_target)
            except ChatClientError as exc:
                say(f"! {exc}")
                return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
