"""Groups in the web client: created from a name and usernames, with sender names on
other people's messages and the members' online count in the header."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenWindow, WebStack
from tests.browser.windows import requires_chromium

pytestmark = [pytest.mark.browser, requires_chromium]


def test_group_from_usernames(open_window: OpenWindow, web_stack: WebStack) -> None:
    rest = web_stack.rest
    leo, mia, nick = rest.user("leo", "Leo"), rest.user("mia", "Mia"), rest.user("nick", "Nick")

    organiser = open_window()
    organiser.log_in(leo.username)
    member = open_window()
    member.log_in(mia.username)

    page = organiser.page
    page.get_by_role("button", name="New chat").click()
    page.get_by_label("Group name").fill("Weekend trip")
    page.get_by_label("Members (usernames, separated by commas)").fill(
        f"{mia.username}, @{nick.username.upper()}"
    )
    page.get_by_role("button", name="Create group").click()
    expect(page.locator(".conversation-title")).to_have_text("Weekend trip")
    expect(organiser.presence_line).to_have_text("3 members, 1 online besides you")
    organiser.send("Who is in for Saturday?")

    # The member learns about the group from its first message.
    expect(member.conversation_item("Weekend trip")).to_contain_text("Leo: Who is in for Saturday?")
    member.open_conversation("Weekend trip")
    expect(member.page.locator(".message-sender")).to_have_text(["Leo"])
    member.send("Me!")
    expect(organiser.message("Me!").locator(".message-sender")).to_have_text("Mia")
    expect(organiser.read_by).to_have_text("Read by Mia")

    # A username that does not exist is refused before anything is created.
    page.get_by_role("button", name="New chat").click()
    page.get_by_label("Group name").fill("Nobody")
    page.get_by_label("Members (usernames, separated by commas)").fill("no_such_user_here")
    page.get_by_role("button", name="Create group").click()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_have_text(
        'There is no user named "no_such_user_here".'
    )
    assert organiser.errors == member.errors == []
