"""The run log: records survive a round trip, bad lines are refused, writers never tear lines."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from bench.logs import (
    CompleteRecord,
    DeliveryRecord,
    FillRecord,
    HistoryRecord,
    LogFormatError,
    LoggedMessage,
    LogWriter,
    MembershipRecord,
    Record,
    ResyncRecord,
    SendRecord,
    SessionRecord,
    body_digest,
    encode_record,
    load_dir,
    parse_record,
    read_file,
)

REPO = Path(__file__).resolve().parents[2]
MESSAGE = LoggedMessage("01J0000000000000000000000A", "c1", 7, "alice", "cid-7", body_digest("hi"))
EVERY_KIND: list[Record] = [
    SendRecord("alice", "phone", "c1", "cid-7", body_digest("hi"), True, MESSAGE.id, 7),
    SendRecord("alice", "phone", "c1", "cid-8", body_digest("yo"), acked=False),
    SessionRecord("bob", "laptop", 3, cursor="1718000000000-4"),
    SessionRecord("bob", "laptop", 1),
    DeliveryRecord("bob", "laptop", 3, "1718000000000-5", MESSAGE),
    ResyncRecord("bob", "laptop", 3, "cursor_too_old"),
    FillRecord("bob", "laptop", "resync", MESSAGE),
    FillRecord("bob", "laptop", "final", MESSAGE),
    HistoryRecord(MESSAGE),
    MembershipRecord("c1", ("alice", "bob")),
    CompleteRecord("bob", "laptop"),
]


def delivery(number: int) -> DeliveryRecord:
    message = LoggedMessage(f"m{number}", "c1", number, "alice", f"cid-{number}")
    return DeliveryRecord("bob", "laptop", 1, f"{number}-0", message)


@pytest.mark.parametrize("record", EVERY_KIND, ids=lambda record: record.kind)
def test_every_record_kind_survives_encoding_and_parsing(record: Record) -> None:
    line = encode_record(record)

    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert orjson.loads(line)["kind"] == record.kind
    assert parse_record(orjson.loads(line)) == record


def test_records_come_from_contract_frames_with_the_body_digested() -> None:
    contract_message = {
        "id": "m1",
        "conversation_id": "c1",
        "seq": 1,
        "sender_id": "alice",
        "body": "hello",
        "client_id": "cid-1",
        "created_at": "2025-01-01T00:00:00Z",
    }
    sent = {
        "type": "sent",
        "client_id": "cid-1",
        "conversation_id": "c1",
        "message_id": "m1",
        "seq": 1,
        "created_at": "2025-01-01T00:00:00Z",
    }

    frame = {"type": "message", "cursor": "5-0", "message": contract_message}
    received = DeliveryRecord.from_frame("bob", "laptop", 2, frame)
    acked = SendRecord.from_ack("alice", "phone", "hello", sent)

    assert received == DeliveryRecord(
        "bob",
        "laptop",
        2,
        "5-0",
        LoggedMessage("m1", "c1", 1, "alice", "cid-1", body_digest("hello")),
    )
    assert acked == SendRecord("alice", "phone", "c1", "cid-1", body_digest("hello"), True, "m1", 1)
    assert SendRecord.from_ack("alice", "phone", "hello", contract_message) == acked
    assert len(body_digest("hello")) == 16
    assert body_digest("hello") != body_digest("hello ")


def test_the_body_itself_is_never_written_to_the_log() -> None:
    frame = {"cursor": "5-0", "message": {"id": "m1", "conversation_id": "c1", "seq": 1}}
    frame["message"] |= {"sender_id": "a", "client_id": "x", "body": "secret words"}

    line = encode_record(DeliveryRecord.from_frame("bob", "laptop", 1, frame))

    assert b"secret" not in line


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ([1, 2], "must be a JSON object"),
        ({"kind": "shout"}, "unknown record kind"),
        ({"kind": "complete", "user_id": "bob"}, "'device_id' must be a string"),
        ({"kind": "session", "user_id": "b", "device_id": "d", "session": True}, "integer"),
        ({"kind": "fill", "user_id": "b", "device_id": "d", "cause": "boredom"}, '"cause"'),
        ({"kind": "history", "message": "m1"}, '"message" must be an object'),
        ({"kind": "membership", "conversation_id": "c", "members": ["a", 2]}, '"members"'),
        (
            {"kind": "send", "user_id": "a", "device_id": "d", "conversation_id": "c"}
            | {"client_id": "x", "body_digest": "0f", "acked": True, "seq": 3},
            "needs its message_id and seq",
        ),
    ],
)
def test_malformed_records_are_refused_with_the_reason(line: object, complaint: str) -> None:
    with pytest.raises(LogFormatError, match=complaint):
        parse_record(line)


def test_a_bad_line_is_reported_with_its_file_and_line_number(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(encode_record(EVERY_KIND[0]) + b"\n" + b"{not json\n")

    with pytest.raises(LogFormatError, match=r"run\.jsonl:3: "):
        list(read_file(path))


def test_load_dir_reads_every_jsonl_file_below_the_directory(tmp_path: Path) -> None:
    with LogWriter(tmp_path, "top") as writer:
        writer.write_all(EVERY_KIND[:3])
    with LogWriter(tmp_path / "worker-1", "device") as writer:
        writer.write_all(EVERY_KIND[3:])
    (tmp_path / "notes.txt").write_text("not a log")

    assert load_dir(tmp_path) == EVERY_KIND


def test_load_dir_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="not a directory"):
        load_dir(tmp_path / "absent")


def test_writer_appends_to_an_existing_file_and_flushes_on_close(tmp_path: Path) -> None:
    with LogWriter(tmp_path, "bob") as writer:
        writer.write(delivery(1))
    writer = LogWriter(tmp_path, "bob")
    writer.write(delivery(2))
    assert load_dir(tmp_path) == [delivery(1)]  # still in the buffer

    writer.close()

    assert load_dir(tmp_path) == [delivery(1), delivery(2)]
    with pytest.raises(ValueError, match="closed"):
        writer.write(delivery(3))


def test_writer_defaults_to_one_file_per_process(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        assert writer.path == tmp_path / f"pid{os.getpid()}.jsonl"


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden"])
def test_writer_refuses_names_that_are_not_plain_file_stems(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="plain file stem"):
        LogWriter(tmp_path, name)


async def test_asyncio_tasks_sharing_a_writer_keep_every_line_whole(tmp_path: Path) -> None:
    async def device(writer: LogWriter, first: int) -> None:
        for number in range(first, first + 200):
            writer.write(delivery(number))
            await asyncio.sleep(0)

    with LogWriter(tmp_path, "shared", buffer_bytes=512) as writer:
        await asyncio.gather(*(device(writer, task * 1000) for task in range(8)))

    records = load_dir(tmp_path)
    assert len(records) == 1600
    assert set(records) == {delivery(t * 1000 + n) for t in range(8) for n in range(200)}


def test_threads_sharing_a_writer_keep_every_line_whole(tmp_path: Path) -> None:
    with LogWriter(tmp_path, "threads", buffer_bytes=256) as writer:
        workers = [
            threading.Thread(
                target=lambda first=first: [writer.write(delivery(first + n)) for n in range(300)]
            )
            for first in range(0, 4000, 1000)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    assert len(set(load_dir(tmp_path))) == 1200


def test_processes_writing_at_once_lose_and_tear_nothing(tmp_path: Path) -> None:
    # Two processes share one name on purpose: O_APPEND keeps their whole lines apart.
    script = (
        "import sys\n"
        "from bench.logs import DeliveryRecord, LoggedMessage, LogWriter\n"
        "first, name = int(sys.argv[1]), sys.argv[2] or None\n"
        "with LogWriter(sys.argv[3], name, buffer_bytes=300) as writer:\n"
        "    for n in range(first, first + 500):\n"
        "        message = LoggedMessage(f'm{n}', 'c1', n, 'alice', f'cid-{n}')\n"
        "        writer.write(DeliveryRecord('bob', 'laptop', 1, f'{n}-0', message))\n"
    )
    names = ["", "", "same", "same"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i * 1000), name, str(tmp_path)], cwd=REPO
        )
        for i, name in enumerate(names)
    ]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0, 0, 0]

    records = load_dir(tmp_path)
    assert len(list(tmp_path.glob("*.jsonl"))) == 3
    assert set(records) == {delivery(i * 1000 + n) for i in range(4) for n in range(500)}
    assert len(records) == 2000
