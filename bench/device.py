"""A device that behaves like a careful client and records everything it sees.

It connects to one of several gateways, resumes by inbox cursor after any close, sends
with a client id and resends unacknowledged messages after a reconnect (so a crash
costs nothing), handles ``resync`` by paging the history API, and writes the records
the promise checker reads (``bench.logs``). The crash tests and the benchmark drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.logs import (
    DeliveryRecord,
    FillRecord,
    LoggedMessage,
    Record,
    ResyncRecord,
    SendRecord,
    SessionRecord,
    body_digest,
)

RECONNECT_CODES_FATAL = {4401, 1008}


@dataclass
class PendingSend:
    conversation_id: str
    body: str
    client_id: str
    done: asyncio.Future[dict[str, Any]]
    sent_at: float = 0.0


@dataclass
class DeviceStats:
    sessions: int = 0
    delivered: int = 0
    acked: int = 0
    send_latencies: list[float] = field(default_factory=list)
    delivery_latencies: list[float] = field(default_factory=list)
    closes: dict[int, int] = field(default_factory=dict)


class Device:
    def __init__(
        self,
        user_id: str,
        device_id: str,
        token: str,
        ws_urls: Sequence[str],
        history_url: str,
        log: Callable[[Record], None],
        *,
        conversations: Sequence[str] = (),
        ack_every: int = 20,
        sent_times: dict[str, float] | None = None,
    ) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.token = token
        self.ws_urls = list(ws_urls)
        self.history_url = history_url.rstrip("/")
        self.log = log
        self.conversations = list(conversations)
        self.ack_every = ack_every
        # Shared between devices of one process: when each client id was first sent,
        # to measure send-to-delivery latency on other devices.
        self.sent_times = sent_times if sent_times is not None else {}
        self.cursor: str | None = None
        self.last_seq: dict[str, int] = {}
        self.pending: dict[str, PendingSend] = {}
        self.stats = DeviceStats()
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._session = 0
        self._ids = itertools.count()
        self._gateway_turn = itertools.cycle(range(len(self.ws_urls)))

    # Sending -------------------------------------------------------------------------

    async def send(
        self, conversation_id: str, body: str, client_id: str | None = None, ack_wait: float = 60.0
    ) -> dict[str, Any]:
        """Send and wait for ``sent``; survives reconnects (resent with the same id)."""
        client_id = client_id or f"{self.device_id}-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending = PendingSend(conversation_id, body, client_id, future)
        self.pending[client_id] = pending
        self.sent_times.setdefault(client_id, time.monotonic())
        await self._transmit(pending)
        return await asyncio.wait_for(asyncio.shield(future), ack_wait)

    async def _transmit(self, pending: PendingSend) -> None:
        ws = self._ws
        if ws is None:
            return  # sent on the next connection
        pending.sent_at = time.monotonic()
        with contextlib.suppress(ConnectionClosed):
            await ws.send(
                orjson.dumps(
                    {
                        "type": "send",
                        "client_id": pending.client_id,
                        "conversation_id": pending.conversation_id,
                        "body": pending.body,
                    }
                ).decode()
            )

    def _record_attempt(self, pending: PendingSend, frame: dict[str, Any] | None) -> None:
        self.log(
            SendRecord(
                user_id=self.user_id,
                device_id=self.device_id,
                conversation_id=pending.conversation_id,
                client_id=pending.client_id,
                body_digest=body_digest(pending.body),
                acked=frame is not None,
                message_id=frame["message_id"] if frame else None,
                seq=frame["seq"] if frame else None,
            )
        )

    # Receiving -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set, reconnecting with backoff."""
        backoff = 0.05
        while not stop.is_set():
            url = self.ws_urls[next(self._gateway_turn)]
            try:
                await self._session_loop(url, stop)
                backoff = 0.05
            except (OSError, InvalidHandshake, TimeoutError, httpx2.HTTPError):
                # Unreachable gateway, or history down during a resync fill: retry.
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)

    async def _session_loop(self, url: str, stop: asyncio.Event) -> None:
        query = f"?device_id={self.device_id}" + (f"&cursor={self.cursor}" if self.cursor else "")
        async with connect(
            url + query,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            compression=None,
            max_size=2**24,
            open_timeout=10,
            ping_interval=None,
            close_timeout=2,
        ) as ws:
            self._session += 1
            self.stats.sessions += 1
            self.log(SessionRecord(self.user_id, self.device_id, self._session, self.cursor))
            self._ws = ws
            for pending in list(self.pending.values()):
                await self._transmit(pending)
            pinger = asyncio.create_task(self._ping(ws))
            stopper = asyncio.create_task(stop.wait())
            try:
                while True:
                    receive = asyncio.ensure_future(ws.recv())
                    done, _ = await asyncio.wait(
                        {receive, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if receive not in done:
                        receive.cancel()
                        return
                    await self._handle(orjson.loads(receive.result()))
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else 1006
                self.stats.closes[code] = self.stats.closes.get(code, 0) + 1
                if code in RECONNECT_CODES_FATAL:
                    raise RuntimeError(f"device {self.device_id} closed with {code}") from exc
            finally:
                self._ws = None
                self.connected.clear()
                pinger.cancel()
                stopper.cancel()
                for pending in self.pending.values():
                    if pending.sent_at:
                        self._record_attempt(pending, None)
                        pending.sent_at = 0.0

    async def _ping(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(5)
                await ws.send('{"type":"ping"}')

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            message = frame["message"]
            self.cursor = frame["cursor"]
            self.stats.delivered += 1
            conversation = message["conversation_id"]
            self.last_seq[conversation] = max(self.last_seq.get(conversation, 0), message["seq"])
            started = self.sent_times.get(message["client_id"])
            if started is not None and message["sender_id"] != self.user_id:
                self.stats.delivery_latencies.append(time.monotonic() - started)
            self.log(
                DeliveryRecord(
                    self.user_id,
                    self.device_id,
                    self._session,
                    frame["cursor"],
                    LoggedMessage.from_contract(message),
                )
            )
            if self.stats.delivered % self.ack_every == 0 and self._ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(
                        orjson.dumps({"type": "ack", "cursor": self.cursor}).decode()
                    )
        elif kind == "sent":
            pending = self.pending.pop(frame["client_id"], None)
            if pending is not None and not pending.done.done():
                self.stats.acked += 1
                if pending.sent_at:
                    self.stats.send_latencies.append(time.monotonic() - pending.sent_at)
                self._record_attempt(pending, frame)
                pending.done.set_result(frame)
        elif kind == "resync":
            self.log(
                ResyncRecord(
                    self.user_id, self.device_id, self._session, str(frame.get("reason", ""))
                )
            )
            self.cursor = frame.get("cursor") or self.cursor
            await self.fill("resync")
        elif kind == "hello":
            # Registered from here on: everything sent after this reaches the device.
            self.cursor = frame.get("cursor") or self.cursor
            self.connected.set()
        elif kind == "error" and frame.get("client_id") in self.pending:
            if frame.get("code") in ("rate_limited", "unavailable"):
                pending = self.pending[frame["client_id"]]
                await asyncio.sleep(frame.get("retry_after_ms", 100) / 1000)
                await self._transmit(pending)
            else:
                pending = self.pending.pop(frame["client_id"])
                pending.done.set_exception(RuntimeError(f"send refused: {frame}"))

    async def fill(self, cause: str) -> int:
        """Page the history of every conversation after the last seq this device has."""
        found = 0
        async with httpx2.AsyncClient(base_url=self.history_url, timeout=10.0) as http:
            for conversation in self.conversations:
                after = self.last_seq.get(conversation, 0)
                while True:
                    response = await http.get(
                        f"/v1/conversations/{conversation}/messages",
                        params={"after_seq": after, "limit": 200},
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                    response.raise_for_status()
                    page = response.json()
                    for message in page["messages"]:
                        self.log(
                            FillRecord(
                                self.user_id,
                                self.device_id,
                                "resync" if cause == "resync" else "final",
                                LoggedMessage.from_contract(message),
                            )
                        )
                        after = max(after, message["seq"])
                        found += 1
                    if not page["has_more"]:
                        break
                self.last_seq[conversation] = after
        return found
