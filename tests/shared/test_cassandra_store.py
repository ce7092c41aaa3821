"""The driver bridge on a real Cassandra node: pages stream on demand, a caller that
stops or is cancelled leaves no driver work behind, and only statements marked
idempotent may be retried."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from chat_shared.settings import ChatSettings
from chat_shared.store.cassandra import CassandraStore
from tests.conftest import CassandraEndpoint

ROWS = 95
PAGE = 10


@pytest.fixture
async def store(cassandra: CassandraEndpoint) -> AsyncIterator[CassandraStore]:
    keyspace = f"bridge_{uuid.uuid4().hex[:12]}"
    settings = ChatSettings(_env_file=None, **cassandra.settings(keyspace))  # type: ignore[call-arg,arg-type]
    connected = await asyncio.to_thread(CassandraStore.connect, settings)
    await connected.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication ="
        " {'class': 'SimpleStrategy', 'replication_factor': 1}",
        prepared=False,
    )
    await connected.wait_for_schema_agreement()
    await connected.execute(
        f"CREATE TABLE {keyspace}.rows (p int, n int, v int, PRIMARY KEY (p, n))", prepared=False
    )
    await connected.wait_for_schema_agreement()
    await asyncio.gather(
        *(
            connected.execute(f"INSERT INTO {keyspace}.rows (p, n) VALUES (1, ?)", (n,))  # noqa: S608
            for n in range(ROWS)
        )
    )
    connected.session.set_keyspace(keyspace)
    yield connected
    await connected.execute(f"DROP KEYSPACE {keyspace}", prepared=False)
    await asyncio.to_thread(connected.close)


SELECT = "SELECT n FROM rows WHERE p = 1"


async def test_pages_are_fetched_one_at_a_time_as_asked(store: CassandraStore) -> None:
    before = store.pages_requested
    pages = store.pages(SELECT, fetch_size=PAGE)
    first = await anext(pages)
    assert [row["n"] for row in first] == list(range(PAGE))
    assert store.pages_requested - before == 1, "no page is read ahead of the caller"
    sizes = [len(first)] + [len(page) async for page in pages]
    assert sizes == [PAGE] * (ROWS // PAGE) + [ROWS % PAGE]
    assert store.pages_requested - before == len(sizes)


async def test_a_caller_that_stops_early_leaves_no_fetch_behind(store: CassandraStore) -> None:
    before = store.pages_requested
    async for _ in store.pages(SELECT, fetch_size=PAGE):
        break
    assert store.pages_requested - before == 1
    assert len(await store.execute(SELECT)) == ROWS, "the session is still healthy"


async def test_a_cancelled_read_leaks_nothing(store: CassandraStore) -> None:
    async def read_all() -> int:
        return sum([len(page) async for page in store.pages(SELECT, fetch_size=1)])

    task = asyncio.create_task(read_all())
    await asyncio.sleep(0)  # the first page is requested
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    requested = store.pages_requested
    assert len(await store.execute(SELECT)) == ROWS
    assert store.pages_requested == requested + 1, "the cancelled read fetched no more"


async def test_statements_carry_the_idempotence_their_caller_declares(
    store: CassandraStore,
) -> None:
    # One statement text, prepared once per declaration: the flags never leak.
    lwt = "UPDATE rows SET v = 1 WHERE p = ? AND n = ? IF EXISTS"
    assert (await store.prepare(SELECT, idempotent=True)).is_idempotent is True
    assert (await store.prepare(SELECT, idempotent=False)).is_idempotent is False
    assert (await store.prepare(lwt, idempotent=False)).is_idempotent is False
    assert (await store.execute(lwt, (1, 0), idempotent=False))[0]["[applied]"] is True
