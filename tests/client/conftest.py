"""One real stack (Valkey, auth, history, gateway as processes) for the client tests.

Access tokens live 60 s (the shortest the auth service allows) so refreshing is part of
the run, and inboxes keep only about 10 entries so a device away for a hundred or so
messages gets ``resync`` (Valkey trims whole stream nodes of 100 entries)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chat_shared.devstack import Stack
from tests.client.helpers import AccountFactory, Urls
from tests.support.ports import free_port
from tests.support.stack import TEST_ENV

CLIENT_TEST_ENV = {
    **TEST_ENV,
    "CHAT_ACCESS_TOKEN_TTL_SECONDS": "60",
    "CHAT_INBOX_MAXLEN": "10",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("client-stack")
    running = Stack(
        data_dir=data_dir,
        ports={"gateway": free_port(), "auth": free_port(), "history": free_port()},
        extra_env=CLIENT_TEST_ENV,
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def urls(stack: Stack) -> Urls:
    return Urls(
        auth=stack.services["auth"].url,
        history=stack.services["history"].url,
        gateway=stack.services["gateway"].url,
    )


@pytest.fixture
async def accounts(urls: Urls) -> AsyncIterator[AccountFactory]:
    factory = AccountFactory(urls)
    yield factory
    await factory.close_all()
