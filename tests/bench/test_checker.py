"""The promise checker passes a clean run and counts each kind of fault exactly once.

The clean run: alice and bob share c1, bob and carol share c2. Bob's send of c1#2 lost
its ack but was stored; alice's c1#3 was acked on a retry. alice/phone reconnects and
gets c1#2 again in its new session; bob/laptop gets a resync and fills c1#2 from
history; carol/tablet resumes mid-conversation and fills c2#1 at the end. alice/web
is not complete, so it only has to be right, not whole.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.checker import VIOLATIONS, Report, check, check_dir
from bench.logs import (
    CompleteRecord,
    DeliveryRecord,
    FillRecord,
    HistoryRecord,
    LoggedMessage,
    LogWriter,
    MembershipRecord,
    Record,
    ResyncRecord,
    SendRecord,
    SessionRecord,
    body_digest,
    parse_cursor,
)

SENDERS = {
    ("c1", 1): ("alice", "a1"),
    ("c1", 2): ("bob", "b1"),
    ("c1", 3): ("alice", "a2"),
    ("c2", 1): ("carol", "k1"),
    ("c2", 2): ("bob", "b2"),
}


def msg(conversation: str, seq: int, **changes: Any) -> LoggedMessage:
    """Message ``seq`` of a conversation as history has it, or with ``changes``."""
    sender, client_id = SENDERS.get((conversation, seq), ("alice", f"x{seq}"))
    digest = body_digest(f"body {client_id}")
    message = LoggedMessage(f"{conversation}-m{seq}", conversation, seq, sender, client_id, digest)
    return replace(message, **changes)


def send(user: str, device: str, conversation: str, seq: int, acked: bool) -> SendRecord:
    message = msg(conversation, seq)
    return SendRecord(
        user_id=user,
        device_id=device,
        conversation_id=conversation,
        client_id=message.client_id,
        body_digest=body_digest(f"body {message.client_id}"),
        acked=acked,
        message_id=message.id if acked else None,
        seq=seq if acked else None,
    )


def deliver(device: str, session: int, cursor: str, conversation: str, seq: int) -> DeliveryRecord:
    user, device_id = device.split("/")
    return DeliveryRecord(user, device_id, session, cursor, msg(conversation, seq))


def clean_run() -> list[Record]:
    return [
        send("alice", "phone", "c1", 1, acked=True),
        send("bob", "laptop", "c1", 2, acked=False),
        send("alice", "phone", "c1", 3, acked=False),
        send("alice", "phone", "c1", 3, acked=True),
        send("carol", "tablet", "c2", 1, acked=True),
        send("bob", "laptop", "c2", 2, acked=True),
        send("bob", "laptop", "c2", 2, acked=True),
        SendRecord("alice", "phone", "c1", "never-stored", body_digest("lost"), acked=False),
        SessionRecord("alice", "phone", 1),
        deliver("alice/phone", 1, "1-0", "c1", 1),
        deliver("alice/phone", 1, "1-1", "c1", 2),
        SessionRecord("alice", "phone", 2, cursor="1-0"),
        deliver("alice/phone", 2, "1-1", "c1", 2),
        deliver("alice/phone", 2, "2-0", "c1", 3),
        deliver("bob/laptop", 1, "1-0", "c1", 1),
        deliver("bob/laptop", 1, "1-1", "c2", 1),
        ResyncRecord("bob", "laptop", 1, "cursor_too_old"),
        deliver("bob/laptop", 1, "3-0", "c1", 3),
        deliver("bob/laptop", 1, "3-1", "c2", 2),
        FillRecord("bob", "laptop", "resync", msg("c1", 2)),
        deliver("carol/tablet", 1, "10-0", "c2", 2),
        FillRecord("carol", "tablet", "final", msg("c2", 1)),
        deliver("alice/web", 1, "1-1", "c1", 2),
        *(HistoryRecord(msg(conversation, seq)) for conversation, seq in SENDERS),
        MembershipRecord("c1", ("alice", "bob")),
        MembershipRecord("c2", ("bob", "carol")),
        CompleteRecord("alice", "phone"),
        CompleteRecord("bob", "laptop"),
        CompleteRecord("carol", "tablet"),
    ]


def only_web(*deliveries: tuple[str, str, int]) -> list[Record]:
    """The clean run with alice/web's one session replaced by these (cursor, conv, seq)."""
    run = [r for r in clean_run() if getattr(r, "device_id", None) != "web"]
    return run + [deliver("alice/web", 1, *delivery) for delivery in deliveries]


def without(run: list[Record], unwanted: Record) -> list[Record]:
    assert unwanted in run
    return [record for record in run if record != unwanted]


def counts(report: Report) -> dict[str, object]:
    return {kind: report[kind] for kind in VIOLATIONS}


def only(kind: str, count: int) -> dict[str, int]:
    return {name: count if name == kind else 0 for name in VIOLATIONS}


def first_example(report: Report, kind: str, *names: str) -> tuple[object, ...]:
    example = report["examples"][kind][0]
    return tuple(example[name] for name in names)


def test_clean_run_passes_with_zero_violations_and_exact_totals() -> None:
    report = check(clean_run())

    assert report["ok"] is True
    assert counts(report) == only("lost", 0)
    assert report["examples"] == {kind: [] for kind in VIOLATIONS}
    assert report["totals"] == {
        "sends": 6,
        "send_attempts": 8,
        "acked": 4,
        "delivered": 10,
        "filled": 2,
        "resyncs": 1,
        "devices": 4,
        "complete_devices": 3,
        "sessions": 5,
        "conversations": 2,
        "history_messages": 5,
    }


def test_clean_run_read_back_from_per_device_files_gives_the_same_report(tmp_path: Path) -> None:
    run = clean_run()
    for record in run:
        device = getattr(record, "device_id", "history")
        with LogWriter(tmp_path, device) as writer:
            writer.write(record)

    names = {path.name for path in tmp_path.iterdir()}
    assert names == {f"{name}.jsonl" for name in ("history", "phone", "laptop", "tablet", "web")}
    assert check_dir(tmp_path) == check(run)


def test_acked_send_missing_from_history_is_lost_even_when_delivered() -> None:
    report = check(without(clean_run(), HistoryRecord(msg("c1", 3))))

    assert counts(report) == only("lost", 1)
    assert report["ok"] is False
    assert report["examples"]["lost"] == [
        {
            "reason": "acked send missing from history",
            "conversation_id": "c1",
            "seq": 3,
            "message_id": "c1-m3",
            "sender_id": "alice",
            "client_id": "a2",
        }
    ]


def test_acked_send_missing_on_a_complete_device_is_lost_for_that_device() -> None:
    report = check(without(clean_run(), deliver("alice/phone", 2, "2-0", "c1", 3)))

    assert counts(report) == only("lost", 1)
    assert first_example(report, "lost", "user_id", "device_id", "seq") == ("alice", "phone", 3)


def test_acked_send_lost_everywhere_counts_once_per_place_it_is_missing() -> None:
    run = without(clean_run(), HistoryRecord(msg("c1", 3)))
    run = without(run, deliver("bob/laptop", 1, "3-0", "c1", 3))

    assert counts(check(run)) == only("lost", 2)


def test_unacked_send_that_never_arrived_is_not_a_loss() -> None:
    run = [*clean_run(), send("bob", "laptop", "c2", 9, acked=False)]

    assert check(run)["ok"] is True


def test_same_message_twice_in_one_session_is_a_duplicate_not_an_order_fault() -> None:
    report = check(only_web(("1-1", "c1", 2), ("1-2", "c1", 2)))

    assert counts(report) == only("duplicates", 1)
    assert report["examples"]["duplicates"][0]["reason"] == "redelivered in a session"


def test_redelivery_in_a_new_session_after_reconnect_is_allowed() -> None:
    run = [deliver("alice/web", 2, "1-1", "c1", 2), *only_web(("1-1", "c1", 2))]

    assert check(run)["ok"] is True


def test_two_history_messages_with_one_seq_are_a_duplicate() -> None:
    intruder = msg("c1", 2, id="c1-other", client_id="b9")

    report = check([*clean_run(), HistoryRecord(intruder)])

    assert counts(report) == only("duplicates", 1)
    assert report["examples"]["duplicates"][0]["reason"] == "history repeats seq"


def test_two_history_messages_with_one_sender_and_client_id_are_a_duplicate() -> None:
    first = LoggedMessage("m1", "c9", 1, "alice", "same", None)
    second = LoggedMessage("m2", "c9", 2, "alice", "same", None)
    run: list[Record] = [HistoryRecord(first), HistoryRecord(second)]

    report = check([*run, MembershipRecord("c9", ("alice",))])

    assert counts(report) == only("duplicates", 1)
    reason = report["examples"]["duplicates"][0]["reason"]
    assert reason == "history repeats sender and client_id"


def test_the_same_history_message_recorded_twice_is_one_message() -> None:
    report = check([*clean_run(), HistoryRecord(msg("c1", 1))])

    assert report["ok"] is True
    assert report["totals"]["history_messages"] == 5


def test_retry_acked_as_another_message_is_a_duplicate() -> None:
    retry = SendRecord("alice", "phone", "c1", "a1", body_digest("body a1"), True, "c1-x", 7)

    report = check([*clean_run(), retry])

    assert counts(report) == only("duplicates", 1)
    ids = first_example(report, "duplicates", "message_id", "retry_message_id")
    assert ids == ("c1-m1", "c1-x")


def test_seq_going_back_within_a_session_is_an_order_violation() -> None:
    report = check(only_web(("1-1", "c1", 3), ("2-0", "c1", 2)))

    assert counts(report) == only("order_violations", 1)
    assert report["examples"]["order_violations"][0]["reason"] == "seq 2 after 3"


def test_cursor_going_back_within_a_session_is_an_order_violation() -> None:
    report = check(only_web(("1-1", "c1", 1), ("1-0", "c1", 2)))

    assert counts(report) == only("order_violations", 1)
    assert report["examples"]["order_violations"][0]["reason"] == "cursor 1-0 after 1-1"


def test_seq_and_cursor_going_back_together_count_as_one_violation() -> None:
    report = check(only_web(("2-0", "c1", 3), ("1-0", "c1", 2)))

    assert counts(report) == only("order_violations", 1)


def test_cursors_compare_as_numbers_not_strings() -> None:
    assert parse_cursor("10-0") == (10, 0)
    assert parse_cursor("5-10") == (5, 10)
    assert parse_cursor("5") is None
    assert parse_cursor("a-1") is None

    assert check(only_web(("9-9", "c1", 1), ("10-2", "c1", 2), ("10-10", "c1", 3)))["ok"]


def test_malformed_cursor_is_an_order_violation() -> None:
    report = check(only_web(("1-1", "c1", 1), ("later", "c1", 2)))

    assert counts(report) == only("order_violations", 1)
    assert report["examples"]["order_violations"][0]["reason"] == "malformed cursor 'later'"


def test_history_missing_a_seq_is_a_gap() -> None:
    run: list[Record] = [HistoryRecord(msg("c9", seq)) for seq in (1, 2, 4, 6)]

    report = check([*run, MembershipRecord("c9", ("alice",))])

    assert counts(report) == only("gaps", 2)
    assert [example["seq"] for example in report["examples"]["gaps"]] == [3, 5]


def test_history_seq_below_one_is_a_gap() -> None:
    run: list[Record] = [HistoryRecord(msg("c9", seq)) for seq in (0, 1)]

    report = check([*run, MembershipRecord("c9", ("alice",))])

    assert counts(report) == only("gaps", 1)
    assert report["examples"]["gaps"][0]["reason"] == "history seq below 1"


def test_complete_device_missing_an_unacked_message_has_a_gap() -> None:
    report = check(without(clean_run(), FillRecord("bob", "laptop", "resync", msg("c1", 2))))

    assert counts(report) == only("gaps", 1)
    assert first_example(report, "gaps", "device_id", "seq") == ("laptop", 2)
    assert first_example(report, "gaps", "reason") == ("complete device misses seq",)


def test_complete_device_missing_the_tail_of_a_conversation_has_gaps() -> None:
    run = clean_run()
    extra: list[Record] = [HistoryRecord(msg("c2", 3)), HistoryRecord(msg("c2", 4))]
    run += [
        *extra,
        deliver("bob/laptop", 2, "4-0", "c2", 3),
        deliver("bob/laptop", 2, "4-1", "c2", 4),
    ]

    report = check(run)

    assert counts(report) == only("gaps", 2)
    assert {example["user_id"] for example in report["examples"]["gaps"]} == {"carol"}


def test_live_jump_within_a_session_without_resync_is_a_gap() -> None:
    report = check(only_web(("1-0", "c1", 1), ("2-0", "c1", 3)))

    assert counts(report) == only("gaps", 1)
    assert first_example(report, "gaps", "session", "seq") == (1, 2)
    assert first_example(report, "gaps", "reason") == ("session skipped seq without resync",)


def test_live_jump_after_a_resync_is_not_a_gap() -> None:
    run = only_web(("1-0", "c1", 1))
    run += [
        ResyncRecord("alice", "web", 1, "cursor_too_old"),
        deliver("alice/web", 1, "2-0", "c1", 3),
    ]

    assert check(run)["ok"] is True


def test_delivery_to_a_user_outside_the_conversation_is_a_non_member_delivery() -> None:
    report = check([*clean_run(), deliver("carol/tablet", 2, "20-0", "c1", 1)])

    assert counts(report) == only("non_member_deliveries", 1)
    where = first_example(report, "non_member_deliveries", "user_id", "conversation_id")
    assert where == ("carol", "c1")


def test_history_fill_to_a_user_outside_the_conversation_is_a_non_member_delivery() -> None:
    report = check([*clean_run(), FillRecord("carol", "tablet", "final", msg("c1", 2))])

    assert counts(report) == only("non_member_deliveries", 1)
    assert report["examples"]["non_member_deliveries"][0]["reason"] == "filled to a non-member"


def test_delivered_copy_with_another_sender_is_a_mismatch() -> None:
    run = only_web()
    run.append(DeliveryRecord("alice", "web", 1, "1-1", msg("c1", 2, sender_id="alice")))

    report = check(run)

    assert counts(report) == only("mismatches", 1)
    assert report["examples"]["mismatches"][0]["fields"] == ["sender_id"]


def test_delivered_copy_with_another_body_is_a_mismatch_unless_the_digest_is_unknown() -> None:
    run = only_web()
    altered = [
        DeliveryRecord("alice", "web", 1, "1-0", msg("c1", 1, body_digest=body_digest("evil"))),
        DeliveryRecord("alice", "web", 1, "1-1", msg("c1", 2, body_digest=None)),
    ]

    report = check(run + altered)

    assert counts(report) == only("mismatches", 1)
    assert report["examples"]["mismatches"][0]["fields"] == ["body_digest"]


def test_delivered_message_that_history_lacks_is_a_mismatch() -> None:
    report = check(only_web(("1-1", "c1", 2), ("2-0", "c1", 3), ("2-1", "c1", 4)))

    assert counts(report) == only("mismatches", 1)
    assert report["examples"]["mismatches"][0]["reason"] == "delivered but not in history"


def test_history_that_differs_from_the_ack_is_a_mismatch() -> None:
    acked = SendRecord("alice", "phone", "c9", "x1", body_digest("hello"), True, "c9-m1", 1)
    stored = LoggedMessage("c9-m1", "c9", 1, "alice", "x1", body_digest("tampered"))

    report = check([acked, HistoryRecord(stored), MembershipRecord("c9", ("alice",))])

    assert counts(report) == only("mismatches", 1)
    assert report["examples"]["mismatches"][0]["fields"] == ["body_digest"]


def test_examples_are_capped_but_counts_are_not() -> None:
    run: list[Record] = [HistoryRecord(msg("c9", seq)) for seq in range(1, 13)]
    run.append(MembershipRecord("c9", ("alice",)))
    run += [deliver("alice/web", 1, f"{seq}-0", "c9", seq) for seq in range(2, 13, 2)]

    report = check(run, max_examples=2)

    assert report["gaps"] == 5
    assert len(report["examples"]["gaps"]) == 2
