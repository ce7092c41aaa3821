"""The promise checker: judges a run log (format in :mod:`bench.logs`) against the promises.

``python -m bench.checker LOGDIR [--max-examples N]`` prints a JSON report and exits 0
when clean, 1 on any violation, 2 when the log cannot be read. From Python, :func:`check`
judges records in memory and :func:`check_dir` a directory. Each item below counts one:

``lost``: an acknowledged send (its first ack per sender, conversation and client_id)
whose message id the final history lacks; per complete device of a member, an
acknowledged seq it never got, live or by history fill.

``duplicates``: a message id delivered again in one session (a new session may
redeliver); a history message repeating the id, seq, or sender and client_id of an
earlier one (identical history records collapse: pages may overlap); a retry acked with
another message id or seq than the first ack.

``order_violations``: a delivery whose seq is not above its conversation's last seq in
the session, or whose cursor is malformed or not above the session's last cursor
(``<ms>-<n>`` compared as numbers). Redeliveries, counted above, are skipped.

``gaps``: a seq below 1 or missing from 1 up to the last seq of a conversation's history;
a seq a complete device misses from the first it saw in a conversation (1 if none) to the
conversation's last, when not an acked send (``lost`` has those); a seq skipped between
deliveries of one conversation in one session, reckoned afresh after each ``resync``
(a session starts wherever its cursor points).

``non_member_deliveries``: a message delivered or filled to a user its conversation's
final membership lacks.

``mismatches``: a delivered or filled message whose id, sender, client_id or body digest
differs from the history message at its seq, or that history lacks (unless ``lost``
counts it as an acked send); a history message that differs from the ack with its id.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, NamedTuple, TypedDict, get_args

import orjson

from bench.logs import (
    CompleteRecord,
    DeliveryRecord,
    FillRecord,
    HistoryRecord,
    LogFormatError,
    LoggedMessage,
    MembershipRecord,
    Record,
    ResyncRecord,
    SendRecord,
    SessionRecord,
    load_dir,
    parse_cursor,
)

Violation = Literal[
    "lost", "duplicates", "order_violations", "gaps", "non_member_deliveries", "mismatches"
]
VIOLATIONS: Final[tuple[Violation, ...]] = get_args(Violation)
DEFAULT_MAX_EXAMPLES: Final = 10

SendKey = tuple[str, str, str]  # sender, conversation, client_id: the idempotency key
DeviceKey = tuple[str, str]  # user, device
SessionKey = tuple[str, str, int]  # user, device, session number
Example = dict[str, object]


class Report(TypedDict):
    ok: bool
    lost: int
    duplicates: int
    order_violations: int
    gaps: int
    non_member_deliveries: int
    mismatches: int
    examples: dict[str, list[Example]]
    totals: dict[str, int]


@dataclass
class _Findings:
    max_examples: int
    counts: dict[Violation, int] = field(default_factory=lambda: dict.fromkeys(VIOLATIONS, 0))
    examples: dict[str, list[Example]] = field(
        default_factory=lambda: {kind: [] for kind in VIOLATIONS}
    )

    def add(self, kind: Violation, reason: str, **details: object) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append({"reason": reason, **details})


@dataclass
class _Run:
    """The records of a run, grouped the way the checks read them."""

    attempts: dict[SendKey, list[SendRecord]] = field(default_factory=lambda: defaultdict(list))
    sessions: dict[SessionKey, list[DeliveryRecord | ResyncRecord]] = field(
        default_factory=lambda: defaultdict(list)
    )
    fills: list[FillRecord] = field(default_factory=list)
    history: dict[str, dict[LoggedMessage, None]] = field(
        default_factory=lambda: defaultdict(dict)  # an ordered set: overlapping pages collapse
    )
    members: dict[str, frozenset[str]] = field(default_factory=dict)
    complete: dict[DeviceKey, None] = field(default_factory=dict)
    devices: set[DeviceKey] = field(default_factory=set)
    session_keys: set[SessionKey] = field(default_factory=set)

    def add(self, record: Record) -> None:
        if isinstance(record, SendRecord):
            key = (record.user_id, record.conversation_id, record.client_id)
            self.attempts[key].append(record)
        elif isinstance(record, DeliveryRecord | ResyncRecord):
            session = (record.user_id, record.device_id, record.session)
            self.sessions[session].append(record)
            self.session_keys.add(session)
            self.devices.add(session[:2])
        elif isinstance(record, SessionRecord):
            self.session_keys.add((record.user_id, record.device_id, record.session))
            self.devices.add((record.user_id, record.device_id))
        elif isinstance(record, FillRecord):
            self.fills.append(record)
            self.devices.add((record.user_id, record.device_id))
        elif isinstance(record, HistoryRecord):
            self.history[record.message.conversation_id][record.message] = None
        elif isinstance(record, MembershipRecord):
            self.members[record.conversation_id] = frozenset(record.members)
        elif isinstance(record, CompleteRecord):
            self.complete[(record.user_id, record.device_id)] = None
            self.devices.add((record.user_id, record.device_id))

    def deliveries(self) -> list[DeliveryRecord]:
        events = (event for session in self.sessions.values() for event in session)
        return [event for event in events if not isinstance(event, ResyncRecord)]

    def copies(self) -> list[DeliveryRecord | FillRecord]:
        """Every message a device got, live or from the history API."""
        return [*self.deliveries(), *self.fills]


@dataclass
class _History:
    """The final history of every conversation: by seq, by message id, and its last seq."""

    by_seq: dict[str, dict[int, LoggedMessage]] = field(default_factory=dict)
    by_id: dict[str, dict[str, LoggedMessage]] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)


class _Ack(NamedTuple):
    """The first acknowledgement of one idempotency key: what the sender was promised."""

    promised: LoggedMessage
    in_history: bool


def check(records: Iterable[Record], max_examples: int = DEFAULT_MAX_EXAMPLES) -> Report:
    """Judge a run from its records (in log order) and build the report."""
    run = _Run()
    for record in records:
        run.add(record)
    findings = _Findings(max_examples)
    history = _check_history(run, findings)
    acks = _check_sends(run, history, findings)
    _check_sessions(run, findings)
    _check_complete_devices(run, history, acks, findings)
    lost_ids = {ack.promised.id for ack in acks if not ack.in_history}
    _check_copies(run, history, lost_ids, findings)
    return _report(run, acks, findings)


def check_dir(directory: Path | str, max_examples: int = DEFAULT_MAX_EXAMPLES) -> Report:
    return check(load_dir(directory), max_examples)


def _check_history(run: _Run, findings: _Findings) -> _History:
    """Duplicates and gaps in the final history, which later checks compare against."""
    history = _History()
    for conversation, messages in run.history.items():
        seqs = history.by_seq[conversation] = {}
        ids = history.by_id[conversation] = {}
        idempotency_keys: set[tuple[str, str]] = set()
        for message in messages:
            taken = {
                "id": message.id in ids,
                "seq": message.seq in seqs,
                "sender and client_id": (message.sender_id, message.client_id) in idempotency_keys,
            }
            if any(taken.values()):
                clashes = " and ".join(name for name, clash in taken.items() if clash)
                findings.add("duplicates", f"history repeats {clashes}", **_describe(message))
            ids.setdefault(message.id, message)
            seqs.setdefault(message.seq, message)
            idempotency_keys.add((message.sender_id, message.client_id))
        for seq in sorted(seq for seq in seqs if seq < 1):
            findings.add("gaps", "history seq below 1", conversation_id=conversation, seq=seq)
        last = history.last_seq[conversation] = max(seqs, default=0)
        for seq in range(1, last + 1):
            if seq not in seqs:
                findings.add("gaps", "history misses seq", conversation_id=conversation, seq=seq)
    return history


def _check_sends(run: _Run, history: _History, findings: _Findings) -> list[_Ack]:
    """Retries agree and acknowledged sends reached history; answers the first ack per key."""
    acks: list[_Ack] = []
    for key, attempts in run.attempts.items():
        acked = [attempt for attempt in attempts if attempt.acked]
        if not acked:
            continue
        first = acked[0]
        assert first.message_id is not None  # SendRecord refuses an ack without them
        assert first.seq is not None
        sender, conversation, client_id = key
        promised = LoggedMessage(
            first.message_id, conversation, first.seq, sender, client_id, first.body_digest
        )
        acked_as = _describe(promised)
        for retry in acked[1:]:
            if (retry.message_id, retry.seq) != (first.message_id, first.seq):
                retried = {"retry_message_id": retry.message_id, "retry_seq": retry.seq}
                findings.add("duplicates", "retry acked as another message", **acked_as, **retried)
        stored = history.by_id.get(conversation, {}).get(first.message_id)
        acks.append(_Ack(promised, in_history=stored is not None))
        if stored is None:
            findings.add("lost", "acked send missing from history", **acked_as)
        elif differs := _differences(stored, promised):
            detail: Example = {"fields": differs, "history": _describe(stored)}
            findings.add("mismatches", "history differs from ack", **acked_as, **detail)
    return acks


def _check_sessions(run: _Run, findings: _Findings) -> None:
    """Per session: no redelivery, rising seqs and cursors, no gap a resync does not explain."""
    for (user, device, session), events in run.sessions.items():
        where = {"user_id": user, "device_id": device, "session": session}
        delivered_ids: set[str] = set()
        last_seq: dict[str, int] = {}
        last_cursor: tuple[int, int] | None = None
        segment: dict[str, set[int]] = defaultdict(set)
        for event in events:
            if isinstance(event, ResyncRecord):
                _report_live_gaps(segment, where, findings)
                segment = defaultdict(set)
                continue
            message, copy = event.message, _describe(event.message)
            if message.id in delivered_ids:
                findings.add("duplicates", "redelivered in a session", **where, **copy)
                continue
            delivered_ids.add(message.id)
            problems = []
            previous = last_seq.get(message.conversation_id)
            if previous is not None and message.seq <= previous:
                problems.append(f"seq {message.seq} after {previous}")
            cursor = parse_cursor(event.cursor)
            if cursor is None:
                problems.append(f"malformed cursor {event.cursor!r}")
            elif last_cursor is not None and cursor <= last_cursor:
                problems.append(f"cursor {event.cursor} after {last_cursor[0]}-{last_cursor[1]}")
            if problems:
                findings.add("order_violations", "; ".join(problems), **where, **copy)
            if previous is None or message.seq > previous:
                last_seq[message.conversation_id] = message.seq
            if cursor is not None and (last_cursor is None or cursor > last_cursor):
                last_cursor = cursor
            segment[message.conversation_id].add(message.seq)
        _report_live_gaps(segment, where, findings)


def _report_live_gaps(
    segment: dict[str, set[int]], where: dict[str, object], findings: _Findings
) -> None:
    for conversation, seqs in segment.items():
        for seq in range(min(seqs), max(seqs) + 1):
            if seq not in seqs:
                gap = {"conversation_id": conversation, "seq": seq}
                findings.add("gaps", "session skipped seq without resync", **where, **gap)


def _check_complete_devices(
    run: _Run, history: _History, acks: list[_Ack], findings: _Findings
) -> None:
    """A complete device holds every message of each of its user's conversations."""
    held_by: dict[DeviceKey, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for record in run.copies():
        conversation = record.message.conversation_id
        held_by[(record.user_id, record.device_id)][conversation].add(record.message.seq)
    acks_in: dict[str, list[_Ack]] = defaultdict(list)
    for ack in acks:
        acks_in[ack.promised.conversation_id].append(ack)
    conversations_of: dict[str, list[str]] = defaultdict(list)
    for conversation, members in run.members.items():
        for user in members:
            conversations_of[user].append(conversation)
    for user, device in run.complete:
        for conversation in conversations_of[user]:
            held = held_by[(user, device)][conversation]
            where = {"user_id": user, "device_id": device}
            acked_seqs = {ack.promised.seq for ack in acks_in[conversation]}
            for ack in acks_in[conversation]:
                if ack.promised.seq not in held:
                    send = _describe(ack.promised)
                    findings.add("lost", "acked send missing on complete device", **where, **send)
            missing = {"conversation_id": conversation} | where
            for seq in range(min(held, default=1), history.last_seq.get(conversation, 0) + 1):
                if seq not in held and seq not in acked_seqs:
                    findings.add("gaps", "complete device misses seq", **missing, seq=seq)


def _check_copies(run: _Run, history: _History, lost_ids: set[str], findings: _Findings) -> None:
    """Every delivered or filled copy goes to a member and equals history."""
    for record in run.copies():
        message = record.message
        conversation = message.conversation_id
        how = "filled" if isinstance(record, FillRecord) else "delivered"
        where: Example = {"user_id": record.user_id, "device_id": record.device_id}
        copy = _describe(message)
        if record.user_id not in run.members.get(conversation, frozenset()):
            findings.add("non_member_deliveries", f"{how} to a non-member", **where, **copy)
        stored = history.by_seq.get(conversation, {}).get(message.seq)
        if stored is None and message.id not in lost_ids:
            findings.add("mismatches", f"{how} but not in history", **where, **copy)
        elif stored is not None and (differs := _differences(stored, message)):
            where |= {"fields": differs, "history": _describe(stored)}
            findings.add("mismatches", f"{how} copy differs from history", **where, **copy)


def _differences(stored: LoggedMessage, copy: LoggedMessage) -> list[str]:
    """Names of the fields that differ; a digest only counts when both sides know it."""
    names = ["id", "seq", "sender_id", "client_id"]
    if stored.body_digest is not None and copy.body_digest is not None:
        names.append("body_digest")
    return [name for name in names if getattr(stored, name) != getattr(copy, name)]


def _describe(message: LoggedMessage) -> Example:
    return {
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "message_id": message.id,
        "sender_id": message.sender_id,
        "client_id": message.client_id,
    }


def _report(run: _Run, acks: list[_Ack], findings: _Findings) -> Report:
    deliveries = list(run.deliveries())
    conversations = {*run.members, *run.history, *(key[1] for key in run.attempts)}
    conversations.update(record.message.conversation_id for record in deliveries)
    totals = {
        "sends": len(run.attempts),
        "send_attempts": sum(len(attempts) for attempts in run.attempts.values()),
        "acked": len(acks),
        "delivered": len(deliveries),
        "filled": len(run.fills),
        "resyncs": sum(len(events) for events in run.sessions.values()) - len(deliveries),
        "devices": len(run.devices),
        "complete_devices": len(run.complete),
        "sessions": len(run.session_keys),
        "conversations": len(conversations),
        "history_messages": sum(len(history) for history in run.history.values()),
    }
    counts = findings.counts
    return Report(
        ok=not any(counts.values()),
        lost=counts["lost"],
        duplicates=counts["duplicates"],
        order_violations=counts["order_violations"],
        gaps=counts["gaps"],
        non_member_deliveries=counts["non_member_deliveries"],
        mismatches=counts["mismatches"],
        examples=findings.examples,
        totals=totals,
    )


def format_report(report: Report) -> str:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.checker", description="Check a run log against the promises."
    )
    parser.add_argument("logdir", type=Path, help="directory of *.jsonl run logs")
    parser.add_argument("--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES, metavar="N")
    args = parser.parse_args(argv)
    try:
        report = check_dir(args.logdir, args.max_examples)
    except LogFormatError as error:
        print(f"cannot read the run log: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
