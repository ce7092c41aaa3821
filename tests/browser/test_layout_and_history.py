"""The web client in a phone-width window and with a long history.

A narrow window shows the list or the conversation, never both, with a back button, and
works from the keyboard. Scrolling up pages back through history by seq, and message
bodies are shown as text whatever they contain.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenWindow, WebStack
from tests.browser.windows import PHONE, requires_chromium

pytestmark = [pytest.mark.browser, requires_chromium]

PAGE_SIZE = 50  # what the client asks history for at a time


def test_narrow_window_shows_one_pane_at_a_time(
    open_window: OpenWindow, web_stack: WebStack, artifacts: Path
) -> None:
    rest = web_stack.rest
    carol, dave = rest.user("carol", "Carol"), rest.user("dave", "Dave")
    conversation = rest.direct(dave, carol)
    rest.post(dave, conversation, ["Are you free tomorrow?"])

    window = open_window(viewport=PHONE)
    window.log_in(carol.username)
    expect(window.sidebar).to_be_visible()
    expect(window.conversation_pane).to_be_hidden()
    expect(window.unread_badge("Dave")).to_have_text("1 unread")

    # Keyboard only: reach the conversation, open it, answer, go back.
    item = window.conversation_item("Dave")
    item.focus()
    window.page.keyboard.press("Enter")
    expect(window.conversation_pane).to_be_visible()
    expect(window.sidebar).to_be_hidden()
    expect(window.composer).to_be_focused()
    expect(window.message_bodies).to_have_text(["Are you free tomorrow?"])
    window.page.keyboard.type("Yes, after five.")
    window.page.keyboard.press("Enter")
    expect(window.message("Yes, after five.")).to_have_attribute("data-status", "sent")
    window.screenshot(artifacts / "narrow-conversation.png")

    back = window.page.get_by_role("button", name="Back to conversations")
    back.focus()
    window.page.keyboard.press("Enter")
    expect(window.sidebar).to_be_visible()
    expect(window.conversation_pane).to_be_hidden()
    expect(item).to_be_focused()
    expect(item).to_contain_text("You: Yes, after five.")
    expect(window.unread_badge("Dave")).to_be_hidden()
    window.screenshot(artifacts / "narrow-list.png")
    assert window.errors == []


def test_scrolling_up_pages_back_through_history(
    open_window: OpenWindow, web_stack: WebStack
) -> None:
    rest = web_stack.rest
    erin, frank = rest.user("erin", "Erin"), rest.user("frank", "Frank")
    conversation = rest.direct(frank, erin)
    bodies = [f"note {n}" for n in range(1, 2 * PAGE_SIZE + 21)]
    hostile = "<img src=x onerror=\"document.title='pwned'\"> <b>bold?</b> Grüße ✓"
    rest.post(frank, conversation, [*bodies, hostile])
    everything = [*bodies, hostile]

    window = open_window()
    window.log_in(erin.username)
    window.open_conversation("Frank")

    # The newest page first; the markup in the last message stays text.
    expect(window.message_bodies).to_have_count(PAGE_SIZE)
    expect(window.message_bodies.last).to_have_text(hostile)
    assert window.page.locator(".message-list img, .message-list b").count() == 0
    assert window.page.title() == "Chat"

    # Each scroll to the top brings the page before, until the first message.
    log = window.page.get_by_role("log")
    for shown in (2 * PAGE_SIZE, len(everything)):
        log.evaluate("element => { element.scrollTop = 0; }")
        expect(window.message_bodies).to_have_count(shown)
    expect(window.message_bodies).to_have_text(everything)
    expect(window.page.get_by_role("button", name="Load earlier messages")).to_be_hidden()
    assert window.errors == []
