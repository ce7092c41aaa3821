"""The protocol core without sockets: every frame type, every error code, delivery order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat_gateway.protocol import (
    MAX_HELD_LIVE,
    Close,
    FetchInbox,
    Ingest,
    MarkRead,
    PublishTyping,
    Reauthenticate,
    Send,
    SessionCore,
    SessionLimits,
    StoreCursor,
)
from chat_shared.errors import Invalid, NotFound, RateLimited, Unavailable
from chat_shared.ingest import IngestedMessage

NOW = 1_000_000.0


def core(**limits: Any) -> SessionCore:
    session = SessionCore(
        user_id="u1",
        device_id="d1",
        session_id="s1",
        start_cursor=(0, 0),
        token_expires_at=NOW + 900,
        limits=SessionLimits(**limits),
        now=NOW,
    )
    session.start()
    session.inbox_page([], complete=True)
    return session


def sent_frames(effects: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(e.text) for e in effects if isinstance(e, Send)]


def error_code(effects: list[Any]) -> str:
    (frame,) = sent_frames(effects)
    assert frame["type"] == "error"
    return str(frame["code"])


def send_frame(**fields: Any) -> str:
    return json.dumps(
        {"type": "send", "client_id": "c1", "conversation_id": "conv", "body": "hi", **fields}
    )


def test_start_says_hello_then_replays_after_the_cursor() -> None:
    session = SessionCore("u1", "d1", "s1", (5, 2), NOW + 900, now=NOW)
    hello, fetch = session.start()
    assert isinstance(hello, Send)
    frame = json.loads(hello.text)
    assert frame == {
        "type": "hello",
        "user_id": "u1",
        "device_id": "d1",
        "session_id": "s1",
        "heartbeat_interval_ms": 5000,
        "cursor": "5-2",
    }
    assert fetch == FetchInbox("5-2")


def test_send_becomes_an_ingest_and_then_a_sent_frame() -> None:
    session = core()
    assert session.receive_text(send_frame(), NOW) == [Ingest("c1", "conv", "hi")]
    message = IngestedMessage("m1", "conv", 7, "u1", "hi", "c1", 1_700_000_000_123)
    (frame,) = sent_frames(session.ingested(message))
    assert frame == {
        "type": "sent",
        "client_id": "c1",
        "conversation_id": "conv",
        "message_id": "m1",
        "seq": 7,
        "created_at": "2023-11-14T22:13:20.123Z",
    }


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        "{}",
        '{"type": "teleport"}',
        '{"type": 5}',
        '{"type": "send", "conversation_id": "c", "body": "x"}',
        '{"type": "send", "client_id": 1, "conversation_id": "c", "body": "x"}',
        '{"type": "send", "client_id": "k", "conversation_id": "c", "body": ["x"]}',
        '{"type": "read", "conversation_id": "c", "seq": "3"}',
        '{"type": "read", "conversation_id": "c", "seq": 1.5}',
        '{"type": "typing", "conversation_id": "c", "active": "yes"}',
        '{"type": "ack"}',
        '{"type": "send", "client_id": "k", "conversation_id": "' + "c" * 65 + '", "body": "x"}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_malformed_frames_get_bad_frame_and_keep_the_session(raw: str) -> None:
    session = core()
    assert error_code(session.receive_text(raw, NOW)) == "bad_frame"
    assert not session.closed
    assert session.receive_text('{"type": "ping"}', NOW) == [Send('{"type":"pong"}')]


def test_bad_frame_echoes_the_client_id_when_it_has_one() -> None:
    session = core()
    raw = '{"type": "send", "client_id": "abc", "conversation_id": "c"}'
    (frame,) = sent_frames(session.receive_text(raw, NOW))
    assert frame["client_id"] == "abc"


def test_extra_fields_are_ignored_for_forward_compatibility() -> None:
    assert core().receive_text(send_frame(future="x"), NOW) == [Ingest("c1", "conv", "hi")]


def test_malformed_frames_never_count_as_hammering() -> None:
    session = core(max_refusals=5)
    for _ in range(50):
        assert error_code(session.receive_text("nope", NOW)) == "bad_frame"
    assert not session.closed


def test_binary_frames_are_refused_without_closing() -> None:
    session = core()
    assert error_code(session.receive_binary(NOW)) == "bad_frame"
    assert not session.closed


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"body": ""}, "invalid"),
        ({"body": " \n\t "}, "invalid"),
        ({"client_id": "k" * 65}, "invalid"),
        ({"client_id": ""}, "invalid"),
        ({"body": "x" * 11}, "too_large"),
    ],
)
def test_send_values_that_are_not_allowed(fields: dict[str, Any], code: str) -> None:
    assert error_code(core(max_chars=10).receive_text(send_frame(**fields), NOW)) == code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFound("No such conversation."), "not_member"),
        (Invalid("client_id must be..."), "invalid"),
        (RateLimited(2.0), "rate_limited"),
        (Unavailable("retry"), "unavailable"),
    ],
)
def test_ingest_failures_map_to_error_codes(error: Exception, code: str) -> None:
    (frame,) = sent_frames(core().ingest_failed("c9", error))  # type: ignore[arg-type]
    assert frame["code"] == code
    assert frame["client_id"] == "c9"


def test_a_send_over_the_users_limit_gets_rate_limited_with_a_retry_hint() -> None:
    session = core()
    assert session.receive_text(send_frame(client_id="k1"), NOW) == [Ingest("k1", "conv", "hi")]
    # The ingest counted it against the user's limit (over every socket) and refused it.
    (frame,) = sent_frames(session.ingest_failed("k1", RateLimited(0.95)))
    assert frame["code"] == "rate_limited"
    assert frame["client_id"] == "k1"
    assert frame["retry_after_ms"] == 950


def test_a_client_that_keeps_hammering_is_closed_after_a_bound() -> None:
    session = core(max_refusals=20)
    effects: list[Any] = []
    for i in range(21):
        session.receive_text(send_frame(client_id=f"k{i}"), NOW)
        effects = session.ingest_failed(f"k{i}", RateLimited(1.0))
        if session.closed:
            break
    assert Close(1008, "too many rate-limited frames") in effects
    assert session.receive_text(send_frame(), NOW) == []


def test_ack_stores_the_cursor_and_refuses_garbage() -> None:
    session = core()
    assert session.receive_text('{"type": "ack", "cursor": "17-3"}', NOW) == [StoreCursor("17-3")]
    assert error_code(session.receive_text('{"type": "ack", "cursor": "zzz"}', NOW)) == "invalid"


def test_read_marks_and_refusals() -> None:
    session = core()
    raw = '{"type": "read", "conversation_id": "conv", "seq": 4}'
    assert session.receive_text(raw, NOW) == [MarkRead("conv", 4)]
    bad = '{"type": "read", "conversation_id": "conv", "seq": 0}'
    assert error_code(session.receive_text(bad, NOW)) == "invalid"
    huge = '{"type": "read", "conversation_id": "conv", "seq": 1152921504606846976}'
    assert error_code(session.receive_text(huge, NOW)) == "invalid"
    beyond_64_bits = '{"type": "read", "conversation_id": "conv", "seq": 99999999999999999999999}'
    assert error_code(session.receive_text(beyond_64_bits, NOW)) == "bad_frame"
    assert error_code(session.effect_refused(NotFound("No such conversation."))) == "not_member"
    assert error_code(session.effect_refused(Invalid("seq is beyond"))) == "invalid"


def test_typing_is_published_and_throttled_silently() -> None:
    session = core(typing_rate=1.0)
    raw = '{"type": "typing", "conversation_id": "conv", "active": true}'
    assert session.receive_text(raw, NOW) == [PublishTyping("conv", True)]
    assert session.receive_text(raw, NOW) == [PublishTyping("conv", True)]
    assert session.receive_text(raw, NOW) == []


def test_ping_answers_pong() -> None:
    assert sent_frames(core().receive_text('{"type": "ping"}', NOW)) == [{"type": "pong"}]


def test_silence_past_the_presence_timeout_closes_4408() -> None:
    session = core(presence_timeout=30.0)
    assert session.tick(NOW + 29) == []
    session.receive_text('{"type": "ping"}', NOW + 29)
    assert session.tick(NOW + 58) == []
    assert session.tick(NOW + 60) == [Close(4408, "no heartbeat")]


def test_expired_token_closes_4401_unless_refreshed() -> None:
    session = core(presence_timeout=10_000)
    raw = '{"type": "auth", "token": "new-token"}'
    assert session.receive_text(raw, NOW + 800) == [Reauthenticate("new-token")]
    session.reauthenticated(NOW + 1800)
    assert session.tick(NOW + 1000) == []
    assert session.tick(NOW + 1800) == [Close(4401, "access token expired")]


def test_revocation_closes_4401() -> None:
    assert core().revoke() == [Close(4401, "session revoked")]


def test_live_deliveries_in_order_go_straight_out() -> None:
    session = core()
    assert session.deliver((10, 0), (0, 0), "m10") == [Send("m10")]
    assert session.deliver((11, 0), (10, 0), "m11") == [Send("m11")]
    assert session.deliver((11, 0), (10, 0), "m11") == [], "a duplicate is dropped"


def test_a_gap_fetches_the_inbox_and_holds_live_entries() -> None:
    session = core()
    session.deliver((10, 0), (0, 0), "m10")
    # 12 arrives before 11: fetch what is after 10, hold 12.
    assert session.deliver((12, 0), (11, 0), "m12") == [FetchInbox("10-0")]
    assert session.deliver((13, 0), (12, 0), "m13") == []
    effects = session.inbox_page([((11, 0), "m11"), ((12, 0), "m12")], complete=True)
    assert effects == [Send("m11"), Send("m12"), Send("m13")]
    assert session.deliver((11, 0), (10, 0), "m11") == [], "the late original is a duplicate"


def test_a_full_queue_leaves_live_entries_in_the_inbox_and_catches_up_from_it() -> None:
    session = core()
    assert session.deliver((10, 0), (0, 0), "m10") == [Send("m10")]
    # The socket's queue is full: nothing is queued, the session reads from the inbox.
    assert session.deliver((11, 0), (10, 0), "m11", has_room=False) == [FetchInbox("10-0")]
    assert session.deliver((12, 0), (11, 0), "m12", has_room=False) == [], "held meanwhile"
    effects = session.inbox_page([((11, 0), "m11"), ((12, 0), "m12")], complete=True)
    assert effects == [Send("m11"), Send("m12")]
    assert session.deliver((13, 0), (12, 0), "m13") == [Send("m13")], "live again"


def test_too_many_live_entries_while_fetching_are_read_again_from_the_inbox() -> None:
    session = core()
    assert session.deliver((1, 0), (0, 0), "m1", has_room=False) == [FetchInbox("0-0")]
    for n in range(2, MAX_HELD_LIVE + 3):  # more than a session holds
        assert session.deliver((n, 0), (n - 1, 0), f"m{n}") == []
    # The page read before the last arrivals: one more round, not a silent drop.
    page = [((n, 0), f"m{n}") for n in range(1, 100)]
    effects = session.inbox_page(page, complete=True)
    assert effects[-1] == FetchInbox("99-0")
    assert len(session.held) <= MAX_HELD_LIVE
    rest = [((n, 0), f"m{n}") for n in range(100, MAX_HELD_LIVE + 3)]
    assert session.inbox_page(rest, complete=True)[-1] == Send(f"m{MAX_HELD_LIVE + 2}")
    assert not session.fetching


def test_replay_pages_until_complete_then_releases_held_entries() -> None:
    session = SessionCore("u1", "d1", "s1", (0, 0), NOW + 900, now=NOW)
    session.start()
    assert session.deliver((5, 0), (4, 0), "m5") == []
    assert session.inbox_page([((1, 0), "m1"), ((2, 0), "m2")], complete=False) == [
        Send("m1"),
        Send("m2"),
        FetchInbox("2-0"),
    ]
    assert session.inbox_page([((3, 0), "m3"), ((4, 0), "m4"), ((5, 0), "m5")], complete=True) == [
        Send("m3"),
        Send("m4"),
        Send("m5"),
    ]


def test_resync_moves_the_cursor_and_tells_the_client() -> None:
    session = SessionCore("u1", "d1", "s1", (1, 0), NOW + 900, now=NOW)
    (frame,) = sent_frames(session.resync("cursor_too_old", (50, 0)))
    assert frame == {"type": "resync", "reason": "cursor_too_old", "cursor": "50-0"}
    assert session.last_cursor == (50, 0)


def test_a_closed_session_ignores_everything() -> None:
    session = core()
    session.revoke()
    assert session.receive_text(send_frame(), NOW) == []
    assert session.deliver((99, 0), (0, 0), "m") == []
    assert session.tick(NOW + 10_000) == []


def test_live_entries_before_start_are_held_until_the_first_page() -> None:
    """A session is registered (and can receive) before its start cursor is known."""
    session = SessionCore("u1", "d1", "s1", (0, 0), NOW + 900, now=NOW)
    assert session.deliver((7, 0), (6, 0), "m7") == []
    session.start_cursor = session.last_cursor = (6, 0)
    _hello, fetch = session.start()
    assert fetch == FetchInbox("6-0")
    assert session.inbox_page([((7, 0), "m7")], complete=True) == [Send("m7")]
