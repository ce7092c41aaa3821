"""Real processes for end-to-end tests: Valkey, auth, history and one or more gateways,
plus helpers to create users and conversations over the public APIs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from bench.checker import Report, check
from bench.device import Device
from bench.logs import CompleteRecord, HistoryRecord, LoggedMessage, MembershipRecord, Record
from bench.stack import RELAXED_LIMITS
from chat_shared.devstack import ServiceProcess, Stack
from tests.support.ports import free_port

# Cheap hashing and generous limits: these tests measure delivery, not brute-force
# protection (the auth suite covers that).
TEST_ENV = {
    **RELAXED_LIMITS,
    "CHAT_ARGON2_TIME_COST": "2",
    "CHAT_ARGON2_MEMORY_KIB": "19456",
    "CHAT_SIGNUPS_PER_ADDRESS": "100000",
    "CHAT_MAX_CONNECTIONS_PER_IP": "100000",
    "CHAT_INGEST_SHARDS": "8",
    "CHAT_FANOUT_LEASE_SECONDS": "2",
    "CHAT_LOG_LEVEL": "WARNING",
}


@dataclass
class User:
    id: str
    username: str
    token: str


@dataclass
class RunningStack:
    stack: Stack
    gateways: list[ServiceProcess] = field(default_factory=list)

    @property
    def auth_url(self) -> str:
        return self.stack.services["auth"].url

    @property
    def history_url(self) -> str:
        return self.stack.services["history"].url

    @property
    def ws_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{g.port}/v1/ws" for g in self.gateways]

    async def signup(self, name: str | None = None) -> User:
        username = name or f"u{uuid.uuid4().hex[:12]}"
        password = "correct horse battery"
        async with httpx2.AsyncClient(base_url=self.auth_url, timeout=30) as http:
            created = await http.post(
                "/v1/auth/signup",
                json={
                    "username": username,
                    "email": f"{username}@example.test",
                    "password": password,
                },
            )
            assert created.status_code == 201, created.text
            login = await http.post(
                "/v1/auth/login", json={"login": username, "password": password}
            )
            assert login.status_code == 200, login.text
        return User(created.json()["id"], username, login.json()["access_token"])

    async def users(self, count: int) -> list[User]:
        return list(await asyncio.gather(*(self.signup() for _ in range(count))))

    async def conversation(self, owner: User, members: Iterable[User], kind: str = "group") -> str:
        others = [m.id for m in members if m.id != owner.id]
        body: dict[str, Any] = {"kind": kind, "members": others}
        if kind == "group":
            body["name"] = f"group {uuid.uuid4().hex[:6]}"
        async with httpx2.AsyncClient(base_url=self.history_url, timeout=30) as http:
            answer = await http.post(
                "/v1/conversations", json=body, headers={"Authorization": f"Bearer {owner.token}"}
            )
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["id"])

    async def history(self, user: User, conversation_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        async with httpx2.AsyncClient(base_url=self.history_url, timeout=30) as http:
            while True:
                page = (
                    await http.get(
                        f"/v1/conversations/{conversation_id}/messages",
                        params={"after_seq": after, "limit": 200},
                        headers={"Authorization": f"Bearer {user.token}"},
                    )
                ).json()
                found += page["messages"]
                if not page["messages"] or not page["has_more"]:
                    return found
                after = page["messages"][-1]["seq"]

    def add_gateway(self, env: dict[str, str] | None = None) -> ServiceProcess:
        index = len(self.gateways) + 1
        gateway = self.stack.service(
            "gateway",
            port=free_port(),
            instance=f"gateway{index}",
            env={"CHAT_GATEWAY_ID": f"gw{index}", **(env or {})},
        )
        gateway.start().wait_ready()
        self.gateways.append(gateway)
        return gateway

    def restart(self, process: ServiceProcess) -> None:
        process.start().wait_ready()


def start_stack(
    data_dir: Path, *, gateways: int = 2, env: dict[str, str] | None = None
) -> RunningStack:
    stack = Stack(
        data_dir=data_dir,
        ports={"gateway": free_port(), "auth": free_port(), "history": free_port()},
        extra_env={**TEST_ENV, **(env or {})},
    )
    stack.start(["auth", "history"])
    running = RunningStack(stack)
    for _ in range(gateways):
        running.add_gateway()
    return running


async def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll a condition on our own state (devices fill as frames arrive)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def verify_promises(
    running: RunningStack,
    records: list[Record],
    devices: list[Device],
    conversations: dict[str, list[User]],
    *,
    drain_seconds: float = 60.0,
) -> Report:
    """Let every device catch up with every conversation, then run the checker over the
    run's records plus the final history and membership."""
    reader = {cid: members[0] for cid, members in conversations.items()}
    finals: dict[str, int] = {}
    for cid, user in reader.items():
        messages = await running.history(user, cid)
        finals[cid] = messages[-1]["seq"] if messages else 0
    members_of = {cid: {u.id for u in users} for cid, users in conversations.items()}

    def caught_up() -> bool:
        return all(
            device.last_seq.get(cid, 0) >= finals[cid]
            for device in devices
            for cid in conversations
            if device.user_id in members_of[cid]
        )

    await wait_for(caught_up, drain_seconds, "every device to receive every message")
    for cid, user in reader.items():
        for message in await running.history(user, cid):
            records.append(HistoryRecord(LoggedMessage.from_contract(message)))
        records.append(MembershipRecord(cid, tuple(sorted(members_of[cid]))))
    for device in devices:
        records.append(CompleteRecord(device.user_id, device.device_id))
    return check(records)


def run_devices(devices: list[Device], stop: asyncio.Event) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(device.run(stop)) for device in devices]


async def stop_devices(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"devices failed: {errors[:3]}"


SendAll = Callable[[], Awaitable[None]]
