"""Devices that were away: one resumes by cursor, one whose cursor fell out of its
inbox gets resync and fills the gap from history. Both end with everything, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.checker import format_report
from bench.device import Device
from bench.logs import Record
from tests.support.stack import run_devices, start_stack, stop_devices, verify_promises

pytestmark = pytest.mark.slow


async def test_offline_devices_catch_up_by_cursor_or_resync(tmp_path: Path) -> None:
    running = start_stack(tmp_path, gateways=2, env={"CHAT_INBOX_MAXLEN": "300"})
    try:
        alice, bob, carol = await running.users(3)
        chat = await running.conversation(alice, [bob, carol])
        records: list[Record] = []

        def device(user_token: tuple[str, str, str], gateway: int) -> Device:
            user_id, name, token = user_token
            urls = running.ws_urls[gateway:] + running.ws_urls[:gateway]
            return Device(
                user_id,
                f"{name}-d",
                token,
                urls,
                running.history_url,
                records.append,
                conversations=[chat],
            )

        sender = device((alice.id, alice.username, alice.token), 0)
        bob_phone = device((bob.id, bob.username, bob.token), 1)
        carol_phone = device((carol.id, carol.username, carol.token), 0)
        stop = asyncio.Event()
        tasks = run_devices([sender, bob_phone, carol_phone], stop)
        for each in (sender, bob_phone, carol_phone):
            await asyncio.wait_for(each.connected.wait(), 10)
        await sender.send(chat, "before")
        await asyncio.wait_for(_seen(bob_phone, chat, 1), 10)
        await asyncio.wait_for(_seen(carol_phone, chat, 1), 10)

        # Both go away. Bob is back after 200 messages, within the 300 his inbox keeps:
        # he resumes by cursor. Carol is back after 1,000: her cursor has fallen out
        # of her inbox, so she gets resync and fills the gap from history.
        bob_task = tasks.pop(1)
        carol_task = tasks.pop(1)
        for task in (bob_task, carol_task):
            task.cancel()
        await asyncio.gather(bob_task, carol_task, return_exceptions=True)
        for i in range(200):
            await sender.send(chat, f"away {i}")
        tasks.append(asyncio.create_task(bob_phone.run(stop)))
        for i in range(200, 1000):
            await sender.send(chat, f"away {i}")
        tasks.append(asyncio.create_task(carol_phone.run(stop)))

        report = await verify_promises(
            running, records, [sender, bob_phone, carol_phone], {chat: [alice, bob, carol]}
        )
        await stop_devices(tasks, stop)
        assert report["ok"], format_report(report)
        assert report["totals"]["history_messages"] == 1001
        assert report["totals"]["resyncs"] >= 1, "carol's cursor had fallen out of her inbox"
        assert bob_phone.stats.sessions == 2
    finally:
        running.stack.stop()


async def _seen(device: Device, conversation: str, seq: int) -> None:
    while device.last_seq.get(conversation, 0) < seq:
        await asyncio.sleep(0.02)
