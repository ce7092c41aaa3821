"""The run log: what load runs and crash tests record for the promise checker.

A run log is a directory of ``*.jsonl`` files (searched recursively). Each line is one
JSON object with a ``kind``; unknown extra fields are ignored, so writers may add
their own (timestamps, latencies). Every process writes its own files; the records of
one device session must sit in one file, in the order they happened, because the
checker reads order from the file.

A *message* object appears inside several records. It is the message as a client saw
it, with the body replaced by a digest (the first 16 hex digits of its UTF-8 SHA-256,
see :func:`body_digest`)::

    {"id", "conversation_id", "seq", "sender_id", "client_id", "body_digest"}

``body_digest`` may be null when the recorder did not see the body; a contract message
object with its ``body`` is accepted too and digested on reading.

Record kinds (fields besides ``kind``):

``send``        one send attempt: ``user_id, device_id, conversation_id, client_id,
                body_digest, acked`` and, when a ``sent`` frame (or a 201) came back,
                ``message_id, seq`` (null otherwise). A retry is another ``send``
                record with the same ``client_id``.
``session``     a device opened a WebSocket connection: ``user_id, device_id, session``
                (a number, one per connection, counted up per device) and the
                ``cursor`` it resumed from (null for none).
``deliver``     a ``message`` frame: ``user_id, device_id, session, cursor, message``
                (the frame's inbox cursor, ``<ms>-<n>``).
``resync``      a ``resync`` frame: ``user_id, device_id, session, reason``.
``fill``        a message fetched from the history API by a device: ``user_id,
                device_id, cause`` (``"resync"`` after a resync frame, ``"final"`` for
                the top-up at the end of the run) and ``message``.
``history``     one message of the final history of its conversation: ``message``.
``membership``  the final members of a conversation: ``conversation_id, members``
                (user ids). The last record for a conversation wins.
``complete``    a device ran to the end and drained: ``user_id, device_id``. It must
                hold every message of every conversation its user belongs to.

:class:`LogWriter` appends records to one file; :func:`load_dir` reads a run back.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import orjson

FillCause = Literal["resync", "final"]
_CURSOR = re.compile(r"([0-9]+)-([0-9]+)")


class LogFormatError(ValueError):
    """A line of a run log is not a record this module knows how to read."""


def parse_cursor(cursor: str) -> tuple[int, int] | None:
    """An inbox cursor ``<ms>-<n>`` as numbers, which is how cursors order; None if malformed."""
    match = _CURSOR.fullmatch(cursor)
    return (int(match[1]), int(match[2])) if match else None


def body_digest(body: str) -> str:
    """Short and stable: enough to tell bodies apart, small enough for big runs."""
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    """A message as a client saw it, the body replaced by its digest."""

    id: str
    conversation_id: str
    seq: int
    sender_id: str
    client_id: str
    body_digest: str | None = None

    @classmethod
    def from_contract(cls, message: Mapping[str, object]) -> LoggedMessage:
        """From a contract message object (which has a ``body``) or a logged one."""
        body = message.get("body")
        return cls(
            id=_str(message, "id"),
            conversation_id=_str(message, "conversation_id"),
            seq=_int(message, "seq"),
            sender_id=_str(message, "sender_id"),
            client_id=_str(message, "client_id"),
            body_digest=body_digest(body)
            if isinstance(body, str)
            else _opt_str(message, "body_digest"),
        )


# ``kind`` comes first and is not an __init__ argument, so orjson writes it with the
# other fields and callers never have to spell it.
@dataclass(frozen=True, slots=True)
class SendRecord:
    kind: Literal["send"] = field(default="send", init=False)
    user_id: str
    device_id: str
    conversation_id: str
    client_id: str
    body_digest: str
    acked: bool
    message_id: str | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        if self.acked and (self.message_id is None or self.seq is None):
            raise LogFormatError("an acknowledged send needs its message_id and seq")

    @classmethod
    def from_ack(
        cls, user_id: str, device_id: str, body: str, sent: Mapping[str, object]
    ) -> SendRecord:
        """From a contract ``sent`` frame (or the 201 answer, which has the same ids)."""
        return cls(
            user_id=user_id,
            device_id=device_id,
            conversation_id=_str(sent, "conversation_id"),
            client_id=_str(sent, "client_id"),
            body_digest=body_digest(body),
            acked=True,
            message_id=_str(sent, "message_id") if "message_id" in sent else _str(sent, "id"),
            seq=_int(sent, "seq"),
        )


@dataclass(frozen=True, slots=True)
class SessionRecord:
    kind: Literal["session"] = field(default="session", init=False)
    user_id: str
    device_id: str
    session: int
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    kind: Literal["deliver"] = field(default="deliver", init=False)
    user_id: str
    device_id: str
    session: int
    cursor: str
    message: LoggedMessage

    @classmethod
    def from_frame(
        cls, user_id: str, device_id: str, session: int, frame: Mapping[str, object]
    ) -> DeliveryRecord:
        """From a contract ``message`` frame."""
        return cls(user_id, device_id, session, _str(frame, "cursor"), _message(frame))


@dataclass(frozen=True, slots=True)
class ResyncRecord:
    kind: Literal["resync"] = field(default="resync", init=False)
    user_id: str
    device_id: str
    session: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FillRecord:
    kind: Literal["fill"] = field(default="fill", init=False)
    user_id: str
    device_id: str
    cause: FillCause
    message: LoggedMessage


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    kind: Literal["history"] = field(default="history", init=False)
    message: LoggedMessage


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    kind: Literal["membership"] = field(default="membership", init=False)
    conversation_id: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CompleteRecord:
    kind: Literal["complete"] = field(default="complete", init=False)
    user_id: str
    device_id: str


Record = (
    SendRecord
    | SessionRecord
    | DeliveryRecord
    | ResyncRecord
    | FillRecord
    | HistoryRecord
    | MembershipRecord
    | CompleteRecord
)


def encode_record(record: Record) -> bytes:
    """One log line, newline included."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def parse_record(obj: object) -> Record:
    """Check one decoded line and turn it into its record; LogFormatError otherwise."""
    if not isinstance(obj, dict):
        raise LogFormatError("a record must be a JSON object")
    kind = obj.get("kind")
    if kind == "send":
        return SendRecord(
            user_id=_str(obj, "user_id"),
            device_id=_str(obj, "device_id"),
            conversation_id=_str(obj, "conversation_id"),
            client_id=_str(obj, "client_id"),
            body_digest=_str(obj, "body_digest"),
            acked=_bool(obj, "acked"),
            message_id=_opt_str(obj, "message_id"),
            seq=_opt_int(obj, "seq"),
        )
    if kind == "session":
        return SessionRecord(
            _str(obj, "user_id"),
            _str(obj, "device_id"),
            _int(obj, "session"),
            _opt_str(obj, "cursor"),
        )
    if kind == "deliver":
        return DeliveryRecord(
            _str(obj, "user_id"),
            _str(obj, "device_id"),
            _int(obj, "session"),
            _str(obj, "cursor"),
            _message(obj),
        )
    if kind == "resync":
        reason = _opt_str(obj, "reason") or ""
        return ResyncRecord(
            _str(obj, "user_id"), _str(obj, "device_id"), _int(obj, "session"), reason
        )
    if kind == "fill":
        cause = obj.get("cause")
        if cause != "resync" and cause != "final":
            raise LogFormatError('field "cause" must be "resync" or "final"')
        return FillRecord(_str(obj, "user_id"), _str(obj, "device_id"), cause, _message(obj))
    if kind == "history":
        return HistoryRecord(_message(obj))
    if kind == "membership":
        members = obj.get("members")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise LogFormatError('field "members" must be a list of strings')
        return MembershipRecord(_str(obj, "conversation_id"), tuple(members))
    if kind == "complete":
        return CompleteRecord(_str(obj, "user_id"), _str(obj, "device_id"))
    raise LogFormatError(f"unknown record kind {kind!r}")


def read_file(path: Path) -> Iterator[Record]:
    """The records of one file, in order; blank lines are skipped."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield parse_record(orjson.loads(line))
            except (orjson.JSONDecodeError, LogFormatError) as error:
                raise LogFormatError(f"{path}:{number}: {error}") from None


def load_dir(directory: Path | str) -> list[Record]:
    """Every record under a run directory, file by file in path order."""
    root = Path(directory)
    if not root.is_dir():
        raise LogFormatError(f"{root}: not a directory")
    records: list[Record] = []
    for path in sorted(root.rglob("*.jsonl")):
        records.extend(read_file(path))
    return records


class LogWriter:
    """Appends records to ``<directory>/<name>.jsonl``.

    ``write`` never awaits, so asyncio tasks of one process can share a writer without
    interleaving lines; a lock covers threads. Lines are buffered and leave in whole
    lines through one ``O_APPEND`` descriptor, so a crash of the writer loses at most
    its buffer and never tears a line. Give each process its own ``name`` (the default
    is per process) or even one per device. ``close`` (or leaving ``with``) flushes.
    """

    def __init__(
        self, directory: Path | str, name: str | None = None, *, buffer_bytes: int = 64 * 1024
    ) -> None:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        stem = name if name is not None else f"pid{os.getpid()}"
        if not stem or "/" in stem or os.sep in stem or stem.startswith("."):
            raise ValueError(f"log name must be a plain file stem, not {stem!r}")
        self.path = folder / f"{stem}.jsonl"
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._limit = buffer_bytes
        self._lock = threading.Lock()

    def write(self, record: Record) -> None:
        self.write_all((record,))

    def write_all(self, records: Iterable[Record]) -> None:
        lines = [encode_record(record) for record in records]
        with self._lock:
            if self._fd is None:
                raise ValueError(f"{self.path}: writer is closed")
            self._buffer.extend(lines)
            self._buffered += sum(len(line) for line in lines)
            if self._buffered >= self._limit:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            self._flush_locked()
            os.close(self._fd)
            self._fd = None

    def _flush_locked(self) -> None:
        if self._fd is None or not self._buffer:
            return
        data = memoryview(b"".join(self._buffer))
        self._buffer.clear()
        self._buffered = 0
        while data:
            data = data[os.write(self._fd, data) :]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _message(obj: Mapping[str, object]) -> LoggedMessage:
    message = obj.get("message")
    if not isinstance(message, dict):
        raise LogFormatError('field "message" must be an object')
    return LoggedMessage.from_contract(message)


def _str(obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise LogFormatError(f"field {key!r} must be a string")
    return value


def _opt_str(obj: Mapping[str, object], key: str) -> str | None:
    return None if obj.get(key) is None else _str(obj, key)


def _int(obj: Mapping[str, object], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise LogFormatError(f"field {key!r} must be an integer")
    return value


def _opt_int(obj: Mapping[str, object], key: str) -> int | None:
    return None if obj.get(key) is None else _int(obj, key)


def _bool(obj: Mapping[str, object], key: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise LogFormatError(f"field {key!r} must be true or false")
    return value
