"""Delivery across two gateway processes: every device of every member gets every
message once, in seq order, and history agrees (checked by the promise checker)."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from bench.checker import format_report
from bench.device import Device
from bench.logs import Record
from tests.support.stack import RunningStack, User, run_devices, stop_devices, verify_promises
from tests.support.wsclient import ChatSocket

pytestmark = pytest.mark.slow


def devices_for(
    running: RunningStack,
    users: list[User],
    records: list[Record],
    conversations: list[str],
    per_user: int = 1,
) -> list[Device]:
    devices = []
    for index, user in enumerate(users):
        for n in range(per_user):
            # Spread devices over the gateways: users meet across processes.
            urls = running.ws_urls[(index + n) % 2 :] + running.ws_urls[: (index + n) % 2]
            devices.append(
                Device(
                    user.id,
                    f"{user.username}-d{n}",
                    user.token,
                    urls,
                    running.history_url,
                    records.append,
                    conversations=conversations,
                )
            )
    return devices


async def test_direct_chat_across_gateways(two_gateways: RunningStack) -> None:
    alice, bob = await two_gateways.users(2)
    direct = await two_gateways.conversation(alice, [bob], kind="direct")
    again = await two_gateways.conversation(alice, [bob], kind="direct")
    assert again == direct, "one direct conversation per pair"
    records: list[Record] = []
    devices = devices_for(two_gateways, [alice, bob], records, [direct], per_user=2)
    stop = asyncio.Event()
    tasks = run_devices(devices, stop)
    for device in devices:
        await asyncio.wait_for(device.connected.wait(), 10)
    alice_phone, _, bob_phone, _ = devices
    await asyncio.gather(
        *(alice_phone.send(direct, f"from alice {i}") for i in range(50)),
        *(bob_phone.send(direct, f"from bob {i}") for i in range(50)),
    )
    report = await verify_promises(two_gateways, records, devices, {direct: [alice, bob]})
    await stop_devices(tasks, stop)
    assert report["ok"], format_report(report)
    assert report["totals"]["history_messages"] == 100
    assert report["totals"]["complete_devices"] == 4


async def test_group_of_twenty_every_device_gets_everything(two_gateways: RunningStack) -> None:
    users = await two_gateways.users(20)
    group = await two_gateways.conversation(users[0], users)
    records: list[Record] = []
    devices = devices_for(two_gateways, users, records, [group])
    # A few members carry a second device on the other gateway.
    devices += devices_for(two_gateways, users[:4], records, [group], per_user=2)[1::2]
    stop = asyncio.Event()
    tasks = run_devices(devices, stop)
    for device in devices:
        await asyncio.wait_for(device.connected.wait(), 10)
    senders = devices[:20]
    await asyncio.gather(
        *(d.send(group, f"{d.device_id} says {i}") for d in senders for i in range(10))
    )
    report = await verify_promises(two_gateways, records, devices, {group: users})
    await stop_devices(tasks, stop)
    assert report["ok"], format_report(report)
    assert report["totals"]["history_messages"] == 200
    assert report["totals"]["delivered"] == 200 * len(devices)


async def test_read_receipts_update_unread_counts_and_typing_is_not_stored(
    two_gateways: RunningStack,
) -> None:
    alice, bob = await two_gateways.users(2)
    group = await two_gateways.conversation(alice, [bob])
    a = await ChatSocket.open(two_gateways.ws_urls[0], alice.token)
    b = await ChatSocket.open(two_gateways.ws_urls[1], bob.token)
    await a.start()
    await b.start()
    for i in range(5):
        await a.send(type="send", client_id=f"k{i}", conversation_id=group, body=f"m{i}")
    await a.send(type="typing", conversation_id=group, active=True)
    # Typing skips the fan-out, so it may overtake the messages or not: take both.
    typing, seqs = [], []
    while not typing or len(seqs) < 5:
        frame = await b.recv()
        if frame["type"] == "typing":
            typing.append(frame["user_id"])
        elif frame["type"] == "message":
            seqs.append(frame["message"]["seq"])
    assert typing == [alice.id]
    assert seqs == [1, 2, 3, 4, 5]

    async def unread(user: User) -> int:
        async with httpx2.AsyncClient(base_url=two_gateways.history_url) as http:
            listing = (
                await http.get(
                    "/v1/conversations", headers={"Authorization": f"Bearer {user.token}"}
                )
            ).json()
        (entry,) = [c for c in listing["conversations"] if c["id"] == group]
        return int(entry["unread_count"])

    assert await unread(bob) == 5
    await b.send(type="read", conversation_id=group, seq=3)
    receipt = await a.expect("receipt")
    assert (receipt["user_id"], receipt["seq"]) == (bob.id, 3)
    for _ in range(100):  # history applies the marker from the stream
        if await unread(bob) == 2:
            break
        await asyncio.sleep(0.05)
    assert await unread(bob) == 2
    history = await two_gateways.history(alice, group)
    assert [m["body"] for m in history] == [f"m{i}" for i in range(5)], "typing is not stored"
    await a.close()
    await b.close()
