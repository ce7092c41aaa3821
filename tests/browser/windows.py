"""What the browser tests drive: a chat window (one browser context, as one person on
one device sees the web client) and a few REST shortcuts for setting the scene."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, WebSocket, expect

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Skipped without Chromium on a laptop; under CI=true they run and the browser fixture
# fails with the reason, since CI must prove them.
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="browser tests need Debian's chromium on PATH (apt-get install chromium)",
)

PASSWORD = "correct horse battery"
WIDE: ViewportSize = {"width": 1024, "height": 680}
PHONE: ViewportSize = {"width": 390, "height": 844}


def unique(name: str) -> str:
    """A username nobody else in the run has (the stack lives for the whole session)."""
    return f"{name}_{uuid.uuid4().hex[:6]}"


@dataclass
class SocketLog:
    """One WebSocket the page opened, with every frame it sent and whether it closed."""

    url: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.sent if frame.get("type") == kind]


def _frame(payload: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {"type": "<not json>"}
    return value if isinstance(value, dict) else {"type": "<not an object>"}


@dataclass
class ChatWindow:
    page: Page
    base_url: str
    sockets: list[SocketLog] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("websocket", self._watch)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _watch(self, ws: WebSocket) -> None:
        log = SocketLog(ws.url)
        self.sockets.append(log)
        ws.on("framesent", lambda payload: log.sent.append(_frame(payload)))
        ws.on("framereceived", lambda payload: log.received.append(_frame(payload)))
        ws.on("close", lambda _ws: setattr(log, "closed", True))

    # Signing in -----------------------------------------------------------------------

    def open(self) -> ChatWindow:
        self.page.goto(self.base_url)
        return self

    def sign_up(self, username: str, display_name: str) -> None:
        page = self.page
        page.get_by_role("button", name="Create an account").click()
        page.get_by_label("Username").fill(username)
        page.get_by_label("Email").fill(f"{username}@example.test")
        page.get_by_label("Display name (optional)").fill(display_name)
        page.get_by_label("Password (8 characters or more)").fill(PASSWORD)
        page.get_by_role("button", name="Create account").click()
        self.expect_connected()

    def log_in(self, login: str) -> None:
        page = self.page
        page.get_by_label("Username or email").fill(login)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        self.expect_connected()

    def expect_connected(self) -> None:
        expect(self.page.locator("#connection")).to_have_text("Connected")

    def wait_until(self, condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
        """Wait for something only the test sees (frames it recorded); Playwright delivers
        events to Python while it waits."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.page.wait_for_timeout(50)

    def stored_session(self) -> dict[str, Any]:
        raw = self.page.evaluate("() => sessionStorage.getItem('chat.session')")
        return dict(json.loads(raw)) if raw else {}

    # Finding things -------------------------------------------------------------------

    @property
    def sidebar(self) -> Locator:
        return self.page.get_by_role("navigation", name="Conversations")

    @property
    def conversation_pane(self) -> Locator:
        return self.page.get_by_role("region", name="Conversation")

    def conversation_item(self, title: str) -> Locator:
        return self.sidebar.get_by_role("link", name=re.compile(re.escape(title)))

    def unread_badge(self, title: str) -> Locator:
        return self.conversation_item(title).locator(".unread-badge")

    @property
    def composer(self) -> Locator:
        return self.page.get_by_label("Message", exact=True)

    @property
    def message_bodies(self) -> Locator:
        return self.page.locator(".message-list .message-body")

    def message(self, text: str) -> Locator:
        return self.page.locator(".message-list .message").filter(
            has=self.page.locator(".message-body", has_text=re.compile(f"^{re.escape(text)}$"))
        )

    @property
    def read_by(self) -> Locator:
        """The "Read by …" line (only the newest message of mine has one)."""
        return self.page.locator(".message-list .read-by:not([hidden])")

    @property
    def typing_line(self) -> Locator:
        return self.page.locator(".typing-line")

    @property
    def presence_line(self) -> Locator:
        return self.page.locator(".conversation-head .presence-line")

    def presence_dot(self, title: str) -> Locator:
        return self.conversation_item(title).locator(".presence-dot")

    # Doing things ---------------------------------------------------------------------

    def start_direct_chat(self, username: str) -> None:
        page = self.page
        page.get_by_role("button", name="New chat").click()
        page.get_by_label("Find people by username").fill(username)
        page.get_by_role("button", name=re.compile(f"@{re.escape(username)}$")).click()
        expect(self.composer).to_be_focused()

    def open_conversation(self, title: str) -> None:
        self.conversation_item(title).click()
        expect(self.page.locator(".conversation-title")).to_have_text(title)

    def send(self, text: str) -> None:
        """Type into the box and press Enter, as a person would."""
        self.composer.fill(text)
        self.composer.press("Enter")
        expect(self.composer).to_have_value("")
        expect(self.message(text).last).to_have_attribute("data-status", re.compile("sent|read"))

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path


def side_by_side(browser: Browser, images: list[Path], out: Path) -> Path:
    """Place screenshots next to each other in one picture, rendered by the same browser
    (no imaging library needed): a throwaway page with the images inline."""
    tags = "".join(
        f'<img alt="" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        for p in images
    )
    html = (
        "<!doctype html><style>body{margin:0;padding:24px;display:flex;gap:24px;"
        "align-items:flex-start;background:#cfd4de}img{border-radius:10px;"
        "box-shadow:0 6px 24px rgb(0 0 0 / 25%)}</style>" + tags
    )
    page = browser.new_page(viewport={"width": 400, "height": 300})
    try:
        page.set_content(html)
        size = page.evaluate(
            "() => ({width: document.body.scrollWidth, height: document.body.scrollHeight})"
        )
        page.set_viewport_size(size)
        page.screenshot(path=str(out), full_page=True)
    finally:
        page.close()
    return out


@dataclass
class RestUser:
    """A user created over the public REST APIs, for setting up a scene quickly."""

    id: str
    username: str
    token: str


class Rest:
    def __init__(self, auth_url: str, history_url: str) -> None:
        self.auth_url = auth_url
        self.history_url = history_url

    def user(self, name: str, display_name: str) -> RestUser:
        username = unique(name)
        with httpx2.Client(base_url=self.auth_url, timeout=30) as http:
            created = http.post(
                "/v1/auth/signup",
                json={
                    "username": username,
                    "email": f"{username}@example.test",
                    "password": PASSWORD,
                    "display_name": display_name,
                },
            )
            assert created.status_code == 201, created.text
            login = http.post("/v1/auth/login", json={"login": username, "password": PASSWORD})
            assert login.status_code == 200, login.text
        return RestUser(created.json()["id"], username, login.json()["access_token"])

    def refresh_status(self, refresh_token: str) -> int:
        with httpx2.Client(base_url=self.auth_url, timeout=30) as http:
            answer = http.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
        return answer.status_code

    def direct(self, owner: RestUser, peer: RestUser) -> str:
        with httpx2.Client(base_url=self.history_url, timeout=30) as http:
            answer = http.post(
                "/v1/conversations",
                json={"kind": "direct", "members": [peer.id]},
                headers={"Authorization": f"Bearer {owner.token}"},
            )
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["id"])

    def post(self, sender: RestUser, conversation_id: str, bodies: list[str]) -> None:
        with httpx2.Client(base_url=self.history_url, timeout=30) as http:
            for body in bodies:
                answer = http.post(
                    f"/v1/conversations/{conversation_id}/messages",
                    json={"body": body, "client_id": uuid.uuid4().hex},
                    headers={"Authorization": f"Bearer {sender.token}"},
                )
                assert answer.status_code == 201, answer.text

    def messages(self, reader: RestUser, conversation_id: str) -> list[dict[str, Any]]:
        """The whole history, oldest first."""
        found: list[dict[str, Any]] = []
        with httpx2.Client(base_url=self.history_url, timeout=30) as http:
            while True:
                answer = http.get(
                    f"/v1/conversations/{conversation_id}/messages",
                    params={"after_seq": found[-1]["seq"] if found else 0, "limit": 200},
                    headers={"Authorization": f"Bearer {reader.token}"},
                )
                assert answer.status_code == 200, answer.text
                page = answer.json()
                found += page["messages"]
                if not page["has_more"]:
                    return found
