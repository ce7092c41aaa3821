"""Faults around a real Cassandra connection: the statements still run on the node.

``answer_lost`` runs a matching statement and then raises the timeout a client sees
when the coordinator's answer never arrives: the write applied, the caller cannot
know it. ``hold`` parks a matching statement until the test lets it go, which makes
"a slow writer is overtaken" an ordering the test sets, not a timing it hopes for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cassandra import OperationTimedOut

from chat_shared.store.cassandra import CassandraStore, Row


@dataclass
class Hold:
    fragment: str
    first_param: object
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class FaultyCassandra(CassandraStore):
    def __init__(self, real: CassandraStore) -> None:
        super().__init__(real.session, real.cluster)
        self._lose: list[str] = []
        self._holds: list[Hold] = []

    def answer_lost(self, fragment: str) -> None:
        """The next statement containing ``fragment`` applies, then times out."""
        self._lose.append(fragment)

    def hold(self, fragment: str, first_param: object) -> Hold:
        """Park the next statement containing ``fragment`` whose first bound value is
        ``first_param`` until ``released`` is set."""
        hold = Hold(fragment, first_param)
        self._holds.append(hold)
        return hold

    async def execute(self, cql: str, params: Sequence[Any] = (), **options: Any) -> list[Row]:
        for hold in self._holds:
            if hold.fragment in cql and params and params[0] == hold.first_param:
                self._holds.remove(hold)
                hold.reached.set()
                await hold.released.wait()
                break
        for fragment in self._lose:
            if fragment in cql:
                self._lose.remove(fragment)
                await super().execute(cql, params, **options)
                raise OperationTimedOut(f"answer lost (injected) for: {cql[:60]}")
        return await super().execute(cql, params, **options)
