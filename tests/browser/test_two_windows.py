"""Two people chat through the web client in two browsers, against the real services.

Alice and Bob sign up in the UI, find each other by username, and talk both ways. On
the way: the typing indicator, read receipts, unread counts that clear on the reader's
other device, presence (online, then "last active" once Bob's browsers close), and the
history after a reload. Screenshots of both windows land in test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import OpenWindow
from tests.browser.windows import PHONE, ChatWindow, requires_chromium, side_by_side, unique

pytestmark = [pytest.mark.browser, requires_chromium]

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "two-windows.png"


def test_two_people_chat_in_two_browsers(
    open_window: OpenWindow, browser: Browser, artifacts: Path
) -> None:
    alice_name, bob_name = unique("alice"), unique("bob")
    alice = open_window()
    alice.sign_up(alice_name, "Alice")
    bob = open_window()
    bob.sign_up(bob_name, "Bob")

    # Alice finds Bob by his username; the message box takes the keyboard at once.
    alice.start_direct_chat(bob_name)
    alice.page.keyboard.type("Hi Bob! Lunch at noon?")
    alice.page.keyboard.press("Enter")
    expect(alice.message("Hi Bob! Lunch at noon?")).to_have_attribute("data-status", "sent")

    # Bob's list shows the new conversation, unread, with the message as its preview.
    expect(bob.conversation_item("Alice")).to_contain_text("Hi Bob! Lunch at noon?")
    expect(bob.unread_badge("Alice")).to_have_text(re.compile(r"^1\b"))

    # Bob also has a phone: same account, its own device, the same unread count.
    phone = open_window(viewport=PHONE)
    phone.log_in(bob_name)
    expect(phone.unread_badge("Alice")).to_have_text(re.compile(r"^1\b"))

    # Reading on the desktop clears the badge on the phone and tells Alice.
    bob.open_conversation("Alice")
    expect(bob.message_bodies).to_have_text(["Hi Bob! Lunch at noon?"])
    expect(phone.unread_badge("Alice")).to_be_hidden()
    expect(bob.unread_badge("Alice")).to_be_hidden()
    expect(alice.read_by).to_have_text("Read by Bob")
    expect(alice.message("Hi Bob! Lunch at noon?")).to_have_attribute("data-status", "read")

    # Bob types: Alice sees it, in the conversation and in her list.
    bob.composer.press_sequentially("Sounds good")
    expect(alice.typing_line).to_have_text("Bob is typing…")
    expect(alice.conversation_item("Bob")).to_contain_text("Bob typing…")
    bob.composer.press_sequentially(", see you there!")
    bob.composer.press("Enter")
    expect(alice.message("Sounds good, see you there!")).to_be_visible()
    expect(alice.typing_line).to_have_text("")
    expect(bob.message("Sounds good, see you there!")).to_have_attribute("data-status", "read")

    alice.send("Great, I'll book a table for two.")
    expect(bob.message_bodies).to_have_text(
        [
            "Hi Bob! Lunch at noon?",
            "Sounds good, see you there!",
            "Great, I'll book a table for two.",
        ]
    )

    # Side by side in a wide window, both online.
    for window in (alice, bob):
        expect(window.sidebar).to_be_visible()
        expect(window.conversation_pane).to_be_visible()
    expect(alice.presence_line).to_have_text("online")
    expect(alice.presence_dot("Bob")).to_have_attribute("data-status", "online")
    expect(bob.presence_line).to_have_text("online")

    # The picture for the docs: Bob halfway through his next answer.
    bob.composer.press_sequentially("Perfect, see")
    expect(alice.typing_line).to_have_text("Bob is typing…")
    pictures = [
        alice.screenshot(artifacts / "alice.png"),
        bob.screenshot(artifacts / "bob.png"),
    ]
    phone.screenshot(artifacts / "bob-phone.png")
    combined = side_by_side(browser, pictures, artifacts / "two-windows.png")
    if os.environ.get("CHAT_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(combined, DOCS_SCREENSHOT)

    # Bob closes every browser he has: Alice sees him go offline, with a last-active time.
    phone.page.context.close()
    bob.page.context.close()
    expect(alice.presence_line).to_have_text(re.compile(r"^last active "))
    expect(alice.presence_dot("Bob")).to_have_attribute("data-status", "offline")

    # A reload keeps the session (this tab's storage) and the open conversation.
    alice.page.reload()
    alice.expect_connected()
    expect(alice.message_bodies).to_have_text(
        [
            "Hi Bob! Lunch at noon?",
            "Sounds good, see you there!",
            "Great, I'll book a table for two.",
        ]
    )
    expect(alice.presence_line).to_have_text(re.compile(r"^last active "))

    assert_tokens_never_in_urls([alice, bob, phone])
    for window in (alice, bob, phone):
        assert window.errors == [], window.errors


def assert_tokens_never_in_urls(windows: list[ChatWindow]) -> None:
    """The access token reaches the gateway in the subprotocol list, never in the URL."""
    opened = [log.url for window in windows for log in window.sockets]
    assert opened, "no WebSocket was opened"
    for url in opened:
        assert "/v1/ws?" in url
        assert "token" not in url.lower()
        assert "bearer" not in url.lower()
        assert not re.search(r"eyJ[\w-]+\.[\w-]+\.", url), url
