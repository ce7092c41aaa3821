"""Cassandra/ScyllaDB on scylla-driver, bridged to asyncio.

``execute_async`` futures complete on the driver's event thread; we hand the result to
the asyncio loop with ``call_soon_threadsafe``. Statements are prepared once and cached.
Load balancing is token-aware over DC-aware round robin, so each query goes to a
replica of its partition in the local datacenter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, dict_factory

from chat_shared.settings import ChatSettings


def consistency_level(name: str) -> int:
    try:
        return int(getattr(ConsistencyLevel, name.upper()))
    except AttributeError as exc:
        raise ValueError(f"unknown consistency level {name!r}") from exc


class CassandraStore:
    def __init__(self, session: Session, cluster: Cluster) -> None:
        self.session = session
        self.cluster = cluster
        self._prepared: dict[str, PreparedStatement] = {}

    @classmethod
    def connect(cls, settings: ChatSettings, *, keyspace: str | None = None) -> CassandraStore:
        """Blocking: call from a thread or at start-up before serving."""
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)
            ),
            consistency_level=consistency_level(settings.cassandra_consistency),
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
            request_timeout=10.0,
            row_factory=dict_factory,
        )
        auth = None
        if settings.cassandra_username:
            auth = PlainTextAuthProvider(
                settings.cassandra_username, settings.cassandra_password or ""
            )
        cluster = Cluster(
            contact_points=settings.cassandra_hosts,
            port=settings.cassandra_port,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            auth_provider=auth,
            protocol_version=4,
        )
        session = cluster.connect(keyspace)
        return cls(session, cluster)

    async def prepare(self, cql: str) -> PreparedStatement:
        statement = self._prepared.get(cql)
        if statement is None:
            statement = await asyncio.to_thread(self.session.prepare, cql)
            self._prepared[cql] = statement
        return statement

    async def execute(
        self, cql: str, params: Sequence[Any] = (), *, prepared: bool = True
    ) -> list[dict[str, Any]]:
        """Run one statement and return every row (all pages)."""
        statement: Any = await self.prepare(cql) if prepared else cql
        loop = asyncio.get_running_loop()
        rows: list[dict[str, Any]] = []
        done: asyncio.Future[None] = loop.create_future()
        response = self.session.execute_async(statement, params)

        def on_page(page: list[dict[str, Any]]) -> None:
            rows.extend(page)
            if response.has_more_pages:
                response.start_fetching_next_page()
            else:
                loop.call_soon_threadsafe(_settle, done, None)

        def on_error(exc: BaseException) -> None:
            loop.call_soon_threadsafe(_settle, done, exc)

        response.add_callbacks(on_page, on_error)
        await done
        return rows

    async def ping(self) -> None:
        await self.execute("SELECT release_version FROM system.local", prepared=False)

    def close(self) -> None:
        self.cluster.shutdown()


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)
