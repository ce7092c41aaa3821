"""Cassandra/ScyllaDB on scylla-driver, bridged to asyncio.

``execute_async`` futures complete on the driver's event thread; each page is handed to
the asyncio loop with ``call_soon_threadsafe``. Statements are prepared once and cached.
Load balancing is token-aware over DC-aware round robin, so each query goes to a
replica of its partition in the local datacenter.

Retries are decided per statement, never blindly (see :class:`StatementRetryPolicy`):
a statement is marked idempotent by its caller when running it twice leaves the same
rows (plain upserts, deletes, reads); a lightweight transaction (``IF ...``) never is,
because a retried Paxos round can report "not applied" for a write that did apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cassandra import (
    ConsistencyLevel,
    OperationTimedOut,
    WriteFailure,
    WriteTimeout,
    WriteType,
)
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
    Session,
)
from cassandra.policies import DCAwareRoundRobinPolicy, RetryPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, SimpleStatement, Statement, dict_factory

from chat_shared.settings import ChatSettings

Row = dict[str, Any]

# Rows per page when a caller streams a large result; small enough to bound memory,
# large enough that a history page is one round trip.
PAGE_SIZE = 500


def consistency_level(name: str) -> int:
    try:
        return int(getattr(ConsistencyLevel, name.upper()))
    except AttributeError as exc:
        raise ValueError(f"unknown consistency level {name!r}") from exc


class StatementRetryPolicy(RetryPolicy):  # type: ignore[misc]
    """Retry once where that is provably safe, otherwise surface the error.

    - Unavailable: the coordinator refused before running anything, so any statement
      may go to the next host.
    - Read timeout: reads are idempotent; the driver's default (retry once when
      enough replicas answered but the data did not arrive) stands.
    - Write timeout or a connection error: the write may or may not have landed.
      Only an idempotent statement is retried, and never a CAS (LWT) write: its
      caller must read the row to learn the outcome.
    """

    def on_write_timeout(
        self,
        query: Statement,
        consistency: int,
        write_type: int,
        required_responses: int,
        received_responses: int,
        retry_num: int,
    ) -> tuple[int, int | None]:
        if retry_num == 0 and query.is_idempotent and write_type != WriteType.CAS:
            return self.RETRY, consistency
        return self.RETHROW, None

    def on_request_error(
        self, query: Statement, consistency: int, error: Exception, retry_num: int
    ) -> tuple[int, int | None]:
        if retry_num == 0 and query.is_idempotent:
            return self.RETRY_NEXT_HOST, None
        return self.RETHROW, None


# Errors after which a write may or may not have been applied: the coordinator (or
# the client) gave up waiting, but replicas may have the write. An LWT that ends in
# one of these must be settled by a serial read, never assumed either way.
OUTCOME_UNKNOWN: tuple[type[BaseException], ...] = (
    WriteTimeout,
    WriteFailure,
    OperationTimedOut,
    NoHostAvailable,
)


class CassandraStore:
    def __init__(self, session: Session, cluster: Cluster) -> None:
        self.session = session
        self.cluster = cluster
        self._prepared: dict[tuple[str, bool], PreparedStatement] = {}
        # Statements sent (pages after the first not counted): what a caller's round
        # trips cost, for tests that pin a code path to a constant number of queries.
        self.statements_sent = 0
        # Pages requested from the driver, the first of each statement included.
        self.pages_requested = 0

    @classmethod
    def connect(cls, settings: ChatSettings, *, keyspace: str | None = None) -> CassandraStore:
        """Blocking: call from a thread or at start-up before serving."""
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)
            ),
            retry_policy=StatementRetryPolicy(),
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

    async def prepare(self, cql: str, *, idempotent: bool) -> PreparedStatement:
        key = (cql, idempotent)
        statement = self._prepared.get(key)
        if statement is None:
            fresh: PreparedStatement = await asyncio.to_thread(self.session.prepare, cql)
            fresh.is_idempotent = idempotent
            self._prepared[key] = statement = fresh
        return statement

    async def pages(
        self,
        cql: str,
        params: Sequence[Any] = (),
        *,
        idempotent: bool = True,
        prepared: bool = True,
        fetch_size: int = PAGE_SIZE,
        serial: bool = False,
    ) -> AsyncIterator[list[Row]]:
        """Yield the result page by page. The next page is requested only when the
        caller asks for it, so memory holds one page; a caller that stops (or is
        cancelled) leaves no fetch running behind it.

        ``serial`` reads at LOCAL_SERIAL: a Paxos read that first completes any
        lightweight transaction in flight on the partition, which is how a writer
        whose LWT timed out learns whether it applied."""
        statement: Statement
        if prepared:
            statement = (await self.prepare(cql, idempotent=idempotent)).bind(params)
            args = None
        else:
            statement = SimpleStatement(cql, is_idempotent=idempotent)
            args = list(params) or None
        statement.fetch_size = fetch_size
        if serial:
            statement.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        pager = _Pager(asyncio.get_running_loop())
        self.statements_sent += 1
        self.pages_requested += 1
        response = self.session.execute_async(statement, args)
        pager.attach(response)
        while True:
            page = await pager.next_page()
            yield page
            if not response.has_more_pages:
                return
            pager.expect_page()
            self.pages_requested += 1
            response.start_fetching_next_page()

    async def execute(
        self,
        cql: str,
        params: Sequence[Any] = (),
        *,
        idempotent: bool = True,
        prepared: bool = True,
        serial: bool = False,
    ) -> list[Row]:
        """Run one statement and return its rows. For results that fit in memory
        (a partition slice with a LIMIT, a point read, a write); stream anything
        larger with :meth:`pages`."""
        rows: list[Row] = []
        async for page in self.pages(
            cql, params, idempotent=idempotent, prepared=prepared, serial=serial
        ):
            rows.extend(page)
        return rows

    async def ping(self) -> None:
        await self.execute("SELECT release_version FROM system.local", prepared=False)

    async def wait_for_schema_agreement(self, within: float = 60.0) -> None:
        """Wait until the coordinator and every peer it knows report one schema
        version: DDL spreads asynchronously, and a statement against a table a
        replica has not learned yet fails there."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            local = await self.execute("SELECT schema_version FROM system.local", prepared=False)
            peers = await self.execute("SELECT schema_version FROM system.peers", prepared=False)
            versions = {row["schema_version"] for row in local + peers}
            if len(versions) == 1 and None not in versions:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"no schema agreement after {within:.0f}s: {versions}")
            await asyncio.sleep(0.2)

    def close(self) -> None:
        self.cluster.shutdown()


class _Pager:
    """One result's pages, delivered from the driver's thread into the asyncio loop.

    The driver calls the callbacks once per page, on its own thread; each call
    resolves the future for the page being awaited. Exceptions raised inside a driver
    callback are swallowed by the driver, so the callback itself never raises.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._page: asyncio.Future[list[Row]] = loop.create_future()

    def attach(self, response: ResponseFuture) -> None:
        response.add_callbacks(self._on_page, self._on_error)

    def expect_page(self) -> None:
        self._page = self._loop.create_future()

    async def next_page(self) -> list[Row]:
        return await self._page

    def _on_page(self, rows: Any) -> None:
        page = list(rows) if rows else []
        self._loop.call_soon_threadsafe(_resolve, self._page, page, None)

    def _on_error(self, exc: BaseException) -> None:
        self._loop.call_soon_threadsafe(_resolve, self._page, None, exc)


def _resolve(
    future: asyncio.Future[list[Row]], page: list[Row] | None, exc: BaseException | None
) -> None:
    if future.done():  # the awaiting caller was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(page or [])
