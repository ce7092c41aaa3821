"""A gateway killed with SIGKILL under load, and one stopped with SIGTERM: clients
reconnect (to either gateway) with their cursors and nothing acknowledged is lost,
duplicated or reordered. Proven by the promise checker over the received logs."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bench.checker import format_report
from bench.device import Device
from bench.logs import Record
from tests.support.stack import run_devices, start_stack, stop_devices, verify_promises

pytestmark = pytest.mark.slow

CLIENTS = 50
MESSAGES = 10_000
GROUP_SIZE = 5


async def test_kill_9_a_gateway_under_load_loses_nothing(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    running = await asyncio.to_thread(start_stack, tmp_path, gateways=2, env=store_env)
    try:
        users = await running.users(CLIENTS)
        groups = {}
        for start in range(0, CLIENTS, GROUP_SIZE):
            members = users[start : start + GROUP_SIZE]
            groups[await running.conversation(members[0], members)] = members
        records: list[Record] = []
        devices = []
        for index, user in enumerate(users):
            mine = [cid for cid, members in groups.items() if user in members]
            urls = running.ws_urls[index % 2 :] + running.ws_urls[: index % 2]
            devices.append(
                Device(
                    user.id,
                    f"{user.username}-d",
                    user.token,
                    urls,
                    running.history_url,
                    records.append,
                    conversations=mine,
                )
            )
        stop = asyncio.Event()
        tasks = run_devices(devices, stop)
        for device in devices:
            await asyncio.wait_for(device.connected.wait(), 15)

        sent = 0
        rng = random.Random(7)

        async def sender(device: Device) -> None:
            nonlocal sent
            (conversation,) = device.conversations
            for i in range(MESSAGES // CLIENTS):
                await device.send(conversation, f"{device.device_id} {i} {rng.random()}")
                sent += 1

        async def chaos() -> None:
            while sent < MESSAGES // 4:
                await asyncio.sleep(0.05)
            running.gateways[0].kill()  # SIGKILL, mid-stream
            await asyncio.to_thread(running.restart, running.gateways[0])
            while sent < MESSAGES * 3 // 4:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(running.gateways[1].stop)  # SIGTERM: 1012, leases handed over
            await asyncio.to_thread(running.restart, running.gateways[1])

        await asyncio.gather(chaos(), *(sender(d) for d in devices))
        report = await verify_promises(running, records, devices, groups, drain_seconds=120)
        await stop_devices(tasks, stop)
        assert report["ok"], format_report(report)
        assert report["totals"]["acked"] >= MESSAGES
        assert report["totals"]["history_messages"] == MESSAGES
        reconnected = sum(1 for d in devices if d.stats.sessions > 1)
        assert reconnected >= CLIENTS // 2, "the crash did cut live sessions"
    finally:
        running.stack.stop()
