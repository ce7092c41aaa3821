"""Identifiers: globally unique and sortable by creation time (ULID layout)."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def new_id(now_ms: int | None = None) -> str:
    """26 characters: 48 bits of milliseconds then 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def id_timestamp_ms(identifier: str) -> int:
    value = 0
    for char in identifier[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value


def is_id(value: str) -> bool:
    return len(value) == 26 and all(c in _ALPHABET for c in value)
