"""The web client's session: tokens refreshed before they expire, rotated, and handed
to the live socket (so a session outlives its access tokens without reconnecting), and
a socket that comes back by itself when the gateway restarts, missing nothing and
sending nothing twice.

The stack issues 60-second access tokens (see conftest); the client refreshes halfway.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import STACK_ENV, OpenWindow, WebStack
from tests.browser.windows import requires_chromium

pytestmark = [pytest.mark.browser, requires_chromium]

TOKEN_SECONDS = int(STACK_ENV["CHAT_ACCESS_TOKEN_TTL_SECONDS"])


def test_refreshed_token_keeps_the_socket_open_past_expiry(
    open_window: OpenWindow, web_stack: WebStack
) -> None:
    rest = web_stack.rest
    grace, heidi = rest.user("grace", "Grace"), rest.user("heidi", "Heidi")
    rest.direct(heidi, grace)

    window = open_window()
    window.log_in(grace.username)
    signed_in_at = time.monotonic()
    first = window.stored_session()
    socket = window.sockets[-1]

    # Halfway through the token's life the client trades its refresh token for a new
    # pair and hands the new access token to the open socket.
    expect(window.page.locator("#connection")).to_have_text("Connected")
    window.page.wait_for_function(
        "(old) => JSON.parse(sessionStorage.getItem('chat.session')).refresh_token !== old",
        arg=first["refresh_token"],
        timeout=TOKEN_SECONDS * 1000,
    )
    refreshed = window.stored_session()
    assert refreshed["access_token"] != first["access_token"]
    window.wait_until(lambda: bool(socket.sent_of("auth")), "the auth frame")
    assert [f["token"] for f in socket.sent_of("auth")] == [refreshed["access_token"]]

    # Wait out the first token's lifetime (it was issued before signed_in_at; the
    # gateway checks expiry twice a second and would close with 4401 had it not taken
    # the new token), then use the same socket.
    remaining = TOKEN_SECONDS + 1.5 - (time.monotonic() - signed_in_at)
    window.page.wait_for_timeout(max(0.0, remaining) * 1000)
    window.open_conversation("Heidi")
    window.send("Still here after the first token expired.")
    assert not socket.closed
    assert window.sockets == [socket], "the client had to reconnect"
    assert [f for f in socket.received if f.get("type") == "error"] == []


def test_invalid_access_token_is_replaced_then_logout_revokes(
    open_window: OpenWindow, web_stack: WebStack
) -> None:
    ivan = web_stack.rest.user("ivan", "Ivan")
    window = open_window()
    window.log_in(ivan.username)
    first = window.stored_session()

    # A token the servers refuse, as after a key rotation: the first REST call gets 401.
    broken = {**first, "access_token": "not-a-token"}
    window.page.evaluate(
        "(value) => sessionStorage.setItem('chat.session', value)", json.dumps(broken)
    )
    window.page.reload()
    window.expect_connected()
    expect(window.page.locator("#account-name")).to_have_text("Ivan")

    # Had the client sent the same refresh token twice, auth would have revoked the
    # whole family and the login screen would be showing.
    now = window.stored_session()
    assert now["refresh_token"] != first["refresh_token"]
    assert now["access_token"] not in ("not-a-token", first["access_token"])

    # Logging out forgets the tokens here and revokes them at the auth service.
    window.page.get_by_role("button", name="Log out").click()
    expect(window.page.get_by_role("button", name="Log in")).to_be_visible()
    assert window.stored_session() == {}
    assert web_stack.rest.refresh_status(now["refresh_token"]) == 401
    assert window.errors == []


def test_socket_comes_back_after_a_gateway_restart_and_catches_up(
    open_window: OpenWindow, web_stack: WebStack
) -> None:
    rest = web_stack.rest
    judy, ken = rest.user("judy", "Judy"), rest.user("ken", "Ken")
    conversation = rest.direct(ken, judy)
    rest.post(ken, conversation, ["Before the restart."])

    window = open_window()
    window.log_in(judy.username)
    window.open_conversation("Ken")
    expect(window.message_bodies).to_have_text(["Before the restart."])
    first = window.sockets[-1]
    # The device acknowledges its inbox position to the gateway as it goes.
    window.wait_until(lambda: bool(first.sent_of("ack")), "an ack frame")
    hello = next(f for f in first.received if f.get("type") == "hello")

    gateway = web_stack.stack.services["gateway"]
    gateway.stop()
    expect(window.page.locator("#connection")).to_have_text("Reconnecting…")

    # Written while disconnected: shown at once, sent when the socket is back.
    window.composer.fill("Typed while the gateway was down.")
    window.composer.press("Enter")
    expect(window.message("Typed while the gateway was down.")).to_have_attribute(
        "data-status", "sending"
    )
    rest.post(ken, conversation, ["Sent while you were away."])

    gateway.start().wait_ready()
    expect(window.page.locator("#connection")).to_have_text("Connected", timeout=30_000)
    expect(window.message("Typed while the gateway was down.")).to_have_attribute(
        "data-status", "sent"
    )
    expect(window.message_bodies).to_have_text(
        ["Before the restart.", "Sent while you were away.", "Typed while the gateway was down."]
    )

    # Same device, resuming from where it was (nothing arrived on the first socket after
    # its hello); Ken's message came as a replay. Judy's message was stored exactly once.
    resumed = window.sockets[-1]
    assert resumed is not first
    assert query(resumed.url)["device_id"] == query(first.url)["device_id"] == hello["device_id"]
    assert query(resumed.url)["cursor"] == hello["cursor"]
    replayed = [f["message"]["body"] for f in resumed.received if f.get("type") == "message"]
    assert "Sent while you were away." in replayed
    stored = rest.messages(judy, conversation)
    assert [m["body"] for m in stored].count("Typed while the gateway was down.") == 1
    assert window.errors == []


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
