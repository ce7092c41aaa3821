"""Inbox cursors are Redis stream ids, ``<milliseconds>-<counter>``; they compare as pairs."""

from __future__ import annotations

import re

_CURSOR = re.compile(r"^(\d{1,15})-(\d{1,15})$")

Cursor = tuple[int, int]
ORIGIN: Cursor = (0, 0)


def parse_cursor(text: str | bytes | None) -> Cursor | None:
    """The cursor as a comparable pair, or None when the text is not a cursor."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if text in ("", "0"):
        return ORIGIN
    match = _CURSOR.match(text)
    if match is None:
        return None
    return int(match[1]), int(match[2])


def format_cursor(cursor: Cursor) -> str:
    return f"{cursor[0]}-{cursor[1]}"
