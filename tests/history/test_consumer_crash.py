"""Kill -9 the history consumer process mid-stream: nothing acknowledged is lost,
nothing is stored twice, every conversation stays in seq order."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from redis.asyncio import Redis

from chat_history.settings import HistorySettings
from chat_shared.ingest import Ingest, IngestedMessage
from chat_shared.keys import HISTORY_GROUP, shard_seq, shard_stream
from chat_shared.store.migrate import sqlite_path

SHARDS = 4
CONVERSATIONS = [f"crash-{n}" for n in range(8)]
TOTAL = 5000


class StoreHasNothing:
    async def last_seq(self, conversation_id: str) -> int:
        return 0


def start_consumer(settings: HistorySettings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHAT_REDIS_URL": settings.redis_url,
        "CHAT_DATA_DIR": str(settings.data_dir),
        "CHAT_INGEST_SHARDS": str(SHARDS),
        "CHAT_CONSUMER_BATCH_SIZE": "200",
        "CHAT_CONSUMER_BLOCK_MS": "100",
        "CHAT_CLAIM_IDLE_MS": "300",
        "CHAT_CLAIM_INTERVAL_SECONDS": "0.1",
        "CHAT_LOG_LEVEL": "WARNING",
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "chat_history.consumer"],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def stored_count(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


async def wait_until(
    condition: object, what: str, process: subprocess.Popen[bytes] | None, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if process is not None:
            assert process.poll() is None, "the consumer process exited"
        await asyncio.sleep(0.005)


async def pending(redis: Redis) -> int:
    total = 0
    for shard in range(SHARDS):
        total += int((await redis.xpending(shard_stream(shard), HISTORY_GROUP))["pending"])
    return total


def is_stopped(pid: int) -> bool:
    # The state letter follows the parenthesised command name in /proc/<pid>/stat.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"


async def kill_with_batch_in_flight(
    process: subprocess.Popen[bytes], redis: Redis, database: Path
) -> None:
    """SIGKILL the consumer while it holds entries it read and has not acknowledged.

    Freezing it first (SIGSTOP) makes "it holds some" a fact we can check before the
    kill, rather than a moment we hope to hit."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and process.poll() is None, "no batch in flight"
        if stored_count(database) and await pending(redis):
            os.killpg(process.pid, signal.SIGSTOP)
            while not is_stopped(process.pid):
                await asyncio.sleep(0.001)
            if await pending(redis):
                os.killpg(process.pid, signal.SIGKILL)
                return
            os.killpg(process.pid, signal.SIGCONT)
        await asyncio.sleep(0.001)


async def ingest(redis: Redis, count: int, offset: int) -> list[IngestedMessage]:
    writer = Ingest(redis, shards=SHARDS)
    sent: list[IngestedMessage] = []
    for start in range(offset, offset + count, 250):
        sent += await asyncio.gather(
            *(
                writer.ingest(
                    CONVERSATIONS[n % len(CONVERSATIONS)],
                    "sender",
                    f"k{n}",
                    f"body {n}",
                    StoreHasNothing(),
                )
                for n in range(start, min(start + 250, offset + count))
            )
        )
    return sent


@pytest.mark.slow
async def test_killed_consumer_loses_and_duplicates_nothing(
    redis: Redis, make_settings: object, tmp_path: Path
) -> None:
    settings: HistorySettings = make_settings(ingest_shards=SHARDS)  # type: ignore[operator]
    database = sqlite_path(settings, "history")
    await Ingest(redis, shards=SHARDS).ensure_groups()
    for conversation in CONVERSATIONS:
        await redis.set(
            shard_seq(Ingest(redis, shards=SHARDS).shard_for(conversation), conversation), 0
        )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        first = start_consumer(settings, tmp_path / "consumer-1.log")
        processes.append(first)
        acknowledged = await ingest(redis, TOTAL // 2, 0)
        await kill_with_batch_in_flight(first, redis, database)
        first.wait()
        assert 0 < stored_count(database) < TOTAL // 2, "the consumer was killed mid-stream"
        assert await pending(redis) > 0, "the dead consumer left entries pending"

        acknowledged += await ingest(redis, TOTAL - TOTAL // 2, TOTAL // 2)
        second = start_consumer(settings, tmp_path / "consumer-2.log")
        processes.append(second)
        await wait_until(lambda: stored_count(database) >= TOTAL, "every message stored", second)

        deadline = time.monotonic() + 30
        while await pending(redis):
            assert time.monotonic() < deadline, "entries left unacknowledged"
            await asyncio.sleep(0.02)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT conversation_id, seq, id FROM messages ORDER BY conversation_id, seq"
        ).fetchall()
    assert len(rows) == TOTAL == len({row[2] for row in rows}), "each message exactly once"
    expected: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for message in acknowledged:
        expected[message.conversation_id].append((message.seq, message.id))
    found: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for conversation, seq, message_id in rows:
        found[conversation].append((seq, message_id))
    for conversation in CONVERSATIONS:
        assert found[conversation] == sorted(expected[conversation])
        assert [seq for seq, _ in found[conversation]] == list(
            range(1, len(found[conversation]) + 1)
        )
