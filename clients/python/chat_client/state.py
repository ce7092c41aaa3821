"""What a device must remember to resume after a restart without loss or repeats."""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


def new_device_id() -> str:
    return f"py-{secrets.token_hex(8)}"


@dataclass
class DeviceState:
    """``device_id`` must stay the same for one device (the gateway keeps the device's
    acknowledged cursor under it); ``cursor`` is the last inbox position the caller
    has taken; ``last_seqs`` the highest seq taken per conversation, which is how
    repeats are recognised and gaps filled from history."""

    device_id: str = field(default_factory=new_device_id)
    cursor: str | None = None
    last_seqs: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "cursor": self.cursor, "last_seqs": self.last_seqs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceState:
        seqs = data.get("last_seqs") or {}
        cursor = data.get("cursor")
        return cls(
            device_id=str(data.get("device_id") or new_device_id()),
            cursor=str(cursor) if cursor else None,
            last_seqs={str(k): int(v) for k, v in seqs.items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> DeviceState:
        """The state saved at ``path``, or a new one when there is no such file."""
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            return cls()
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a device state")
        return cls.from_json(data)

    def save(self, path: str | Path) -> None:
        """Write atomically (a crash mid-write leaves the previous state intact)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
