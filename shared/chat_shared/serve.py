"""Run one service under uvicorn with the flags this system depends on.

The one place those flags live, used by ``make run``, the tests and the container
images: the sans-I/O WebSocket implementation, a frame-size cap enforced before any
parsing, permessage-deflate off (memory per socket and a compression-bomb surface),
uvloop and httptools, and a graceful-shutdown timeout that lets sockets drain.

    python -m chat_shared.serve gateway --port 8000
"""

from __future__ import annotations

import argparse
import os
import sys

SERVICES: dict[str, tuple[str, int]] = {
    "gateway": ("chat_gateway.app:create_app", 8000),
    "auth": ("chat_auth.app:create_app", 8001),
    "history": ("chat_history.app:create_app", 8002),
}

DEFAULT_MAX_FRAME_BYTES = 256 * 1024


def uvicorn_options(service: str, host: str, port: int) -> dict[str, object]:
    factory, _ = SERVICES[service]
    return {
        "app": factory,
        "factory": True,
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "ws_max_size": int(os.environ.get("CHAT_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)),
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,  # presence heartbeats are the application's business
        "timeout_graceful_shutdown": int(os.environ.get("CHAT_SHUTDOWN_GRACE_SECONDS", "20")),
        "access_log": False,
        "server_header": False,
        "proxy_headers": os.environ.get("CHAT_TRUST_PROXY_HEADERS", "false").lower() == "true",
        "forwarded_allow_ips": os.environ.get("CHAT_FORWARDED_ALLOW_IPS", "127.0.0.1"),
        "backlog": 4096,
        "log_config": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chat-serve")
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--host", default=os.environ.get("CHAT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    port = args.port or int(os.environ.get("CHAT_PORT", SERVICES[args.service][1]))

    import uvicorn

    uvicorn.run(**uvicorn_options(args.service, args.host, port))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
