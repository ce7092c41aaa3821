"""The bare relay: the ceiling the gateway is compared with, served the same way.

A raw ASGI app under uvicorn with the gateway's flags (uvloop, httptools,
``websockets-sansio``, no permessage-deflate, no protocol pings) and the gateway's GC
settings, doing nothing but moving frames: every text frame a socket sends goes to the
other members of its room (``?room=NAME``), or to every member including the sender
with ``&to=all``. Rooms of two are a 1:1 relay; rooms of ten with ``to=all`` are the
x10 room fan-out.

    python -m bench.relay --port 9000
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

rooms: dict[str, list[Send]] = defaultdict(list)


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    query = parse_qs(scope.get("query_string", b"").decode())
    room = rooms[(query.get("room") or ["default"])[0]]
    to_all = (query.get("to") or [""])[0] == "all"
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    room.append(send)
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            frame = {"type": "websocket.send", "text": message.get("text") or ""}
            for target in room:
                if to_all or target is not send:
                    await target(frame)
    finally:
        room.remove(send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # The gateway's settings (chat_gateway.app): same collector behaviour.
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 50, 100)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_ping_interval=None,
        ws_max_size=256 * 1024,
        access_log=False,
        log_level="warning",
        backlog=4096,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
