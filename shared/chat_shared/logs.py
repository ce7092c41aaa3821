"""JSON logs with the request or session id of the current task.

Log records never carry tokens, passwords or message bodies: callers log ids and sizes.
Other people's log lines can: uvicorn prints a WebSocket's path with its query string,
where a tool may have put ``access_token``. So the one formatter every record passes
through also blanks anything shaped like a token (a JWT, a ``bearer.`` subprotocol, an
``access_token``/``refresh_token`` parameter) in the message, the extra fields and
tracebacks.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from typing import Any

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "session_id", default=None
)

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_SECRETS = re.compile(
    r"(?P<param>(?:access|refresh)_token=)[^&\s\"']+"
    r"|(?P<scheme>[Bb]earer[ .])[A-Za-z0-9._~+/=-]+"
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every token-shaped part replaced by ``[redacted]``."""
    return _SECRETS.sub(lambda m: (m.group("param") or m.group("scheme") or "") + REDACTED, text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if (rid := request_id_var.get()) is not None:
            entry["request_id"] = rid
        if (sid := session_id_var.get()) is not None:
            entry["session_id"] = sid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger and uvicorn's loggers to one JSON handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Our middleware writes one access line per request with the request id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
