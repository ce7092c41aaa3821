"""A local Apache Cassandra node, for ``make run``, the tests and the benchmark.

Production runs Cassandra or ScyllaDB under an operator; on a laptop and in CI this
module starts one real node from the ``cassandra-all`` artifact so the store adapters are
proven on the engine they target, not only on SQLite. The jars come from Maven (the pom
beside this file) into a git-ignored cache; nothing is downloaded at run time after the
first fetch. The node is one token on 127.0.0.1, on free ports, with its data under the
folder it is given, so a restart on the same folder keeps the data (the fault tests
rely on that).

Usage::

    python -m chat_shared.cassandra_node fetch        # download the jars once
    python -m chat_shared.cassandra_node run DIR      # a node in the foreground
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from chat_shared.children import kill, terminate
from chat_shared.loopback import free_port

CASSANDRA_VERSION = "5.0.6"
DEFAULT_CACHE_DIR = Path(".cache/cassandra")
READY_TIMEOUT_SECONDS = 240.0

# From Cassandra's own conf/jvm17-server.options: the JDK internals it reaches into.
_EXPORTS = [
    "java.base/jdk.internal.misc",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server",
    "java.sql/java.sql",
    "java.base/java.lang.ref",
    "jdk.unsupported/sun.misc",
    "jdk.compiler/com.sun.tools.javac.file",
    "jdk.attach/sun.tools.attach",
]
_OPENS = [
    "java.base/java.lang.module",
    "java.base/jdk.internal.loader",
    "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect",
    "java.base/jdk.internal.math",
    "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar",
    "java.base/sun.nio.ch",
    "java.base/java.io",
    "java.base/java.lang.reflect",
    "java.base/java.lang",
    "java.base/java.util",
    "java.base/java.nio",
    "jdk.management/com.sun.management.internal",
    "jdk.compiler/com.sun.tools.javac",
]

_LOGBACK = """<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%d{{ISO8601}} %-5level [%thread] %logger{{20}} %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""


class CassandraUnavailable(RuntimeError):
    """Java, Maven or the jars are missing: the reason says which."""


def java_binary() -> str:
    """Java 17 (the release Cassandra 5.0 supports besides 11); JAVA_HOME wins."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    for candidate in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-17-openjdk-arm64"):
        if (Path(candidate) / "bin" / "java").exists():
            return f"{candidate}/bin/java"
    found = shutil.which("java")
    if found is None:
        raise CassandraUnavailable("no java on PATH (Cassandra 5.0 needs Java 17)")
    return found


def fetch_jars(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Copy cassandra-all and its runtime dependencies into ``cache_dir/lib`` once.

    A marker file is written last, so an interrupted fetch is redone rather than
    leaving a half-filled folder that would fail at start with a missing class.
    """
    cache_dir = cache_dir.resolve()
    lib = cache_dir / "lib"
    marker = lib / f".complete-{CASSANDRA_VERSION}"
    if marker.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise CassandraUnavailable("no mvn on PATH (it fetches the cassandra-all jars)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    pom = cache_dir / "pom.xml"
    pom.write_text(resources.files(__package__).joinpath("pom.xml").read_text("utf-8"))
    if lib.exists():
        shutil.rmtree(lib)
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-3000:]
        raise CassandraUnavailable(f"mvn could not fetch cassandra-all {CASSANDRA_VERSION}: {tail}")
    marker.write_text(CASSANDRA_VERSION)
    return lib


@dataclass
class CassandraNode:
    """One Cassandra node; its data lives in ``data_dir`` and survives a restart."""

    data_dir: Path
    cache_dir: Path = DEFAULT_CACHE_DIR
    native_port: int = 0
    storage_port: int = 0
    heap: str = "1g"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.cache_dir = Path(self.cache_dir).resolve()
        ports = self.data_dir / "ports"
        if not self.native_port and ports.exists():
            # A restart on the same folder keeps its ports: clients already know them.
            self.native_port, self.storage_port = map(int, ports.read_text().split())
        self.native_port = self.native_port or free_port()
        self.storage_port = self.storage_port or free_port()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "system.log"

    def write_config(self) -> Path:
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.data_dir / "ports").write_text(f"{self.native_port} {self.storage_port}")
        d = self.data_dir
        yaml = f"""\
cluster_name: chat-local
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{self.storage_port}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {self.storage_port}
native_transport_port: {self.native_port}
start_native_transport: true
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
data_file_directories: ["{d / "data"}"]
commitlog_directory: {d / "commitlog"}
saved_caches_directory: {d / "saved_caches"}
hints_directory: {d / "hints"}
cdc_raw_directory: {d / "cdc_raw"}
# Periodic sync: the commit log is fsynced every 10 s, as in Cassandra's default.
commitlog_sync: periodic
commitlog_sync_period: 10000ms
auto_snapshot: false
snapshot_before_compaction: false
concurrent_compactors: 1
# Generous timeouts: the node shares two cores with the services and the tests.
read_request_timeout: 10000ms
range_request_timeout: 20000ms
write_request_timeout: 10000ms
counter_write_request_timeout: 10000ms
cas_contention_timeout: 5000ms
truncate_request_timeout: 60000ms
request_timeout: 20000ms
paxos_variant: v2
"""
        config = d / "cassandra.yaml"
        config.write_text(yaml)
        (d / "logback.xml").write_text(_LOGBACK.format(log=self.log_path))
        return config

    def command(self, lib: Path) -> list[str]:
        jamm = next(lib.glob("jamm-*.jar"), None)
        if jamm is None:
            raise CassandraUnavailable(f"no jamm agent jar in {lib}")
        d = self.data_dir
        args = [java_binary(), "-Djdk.attach.allowAttachSelf=true"]
        args += [f"--add-exports={name}=ALL-UNNAMED" for name in _EXPORTS]
        args += [f"--add-opens={name}=ALL-UNNAMED" for name in _OPENS]
        args += [
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-Xss256k",
            "-XX:MaxDirectMemorySize=512m",
            "-XX:+UseG1GC",
            "-XX:ActiveProcessorCount=2",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "-Dio.netty.allocator.useCacheForAllThreads=true",
            "-Dio.netty.allocator.maxOrder=11",
            f"-javaagent:{jamm}",
            f"-Dcassandra.config=file://{d / 'cassandra.yaml'}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={d}",
            f"-Dcassandra.logdir={d / 'logs'}",
            f"-Dlogback.configurationFile=file://{d / 'logback.xml'}",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=0",
            "-Dcassandra.unsafesystem=true",
            "-Dcassandra.jmx.local.port=0",
            f"-Djna.tmpdir={d / 'tmp'}",
            f"-Djava.io.tmpdir={d / 'tmp'}",
            "-cp",
            f"{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return args

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> CassandraNode:
        lib = fetch_jars(self.cache_dir)
        self.write_config()
        out = open(self.data_dir / "logs" / "stdout.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(lib),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Ready means the native port answers ``SELECT release_version FROM system.local``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"cassandra exited with {self.process.returncode}: {self._log_tail()}"
                )
            if self._port_open() and self.release_version() is not None:
                return
            time.sleep(0.5)
        raise TimeoutError(f"cassandra not ready after {timeout:.0f}s: {self._log_tail()}")

    def release_version(self) -> str | None:
        from cassandra.cluster import Cluster, NoHostAvailable

        cluster = Cluster([self.host], port=self.native_port, protocol_version=4)
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
            return str(row[0])
        except (NoHostAvailable, OSError):
            return None
        finally:
            cluster.shutdown()

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.native_port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self) -> str:
        for path in (self.log_path, self.data_dir / "logs" / "stdout.log"):
            if path.exists() and path.stat().st_size:
                return path.read_text(errors="replace")[-3000:]
        return "(no log)"

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM: Cassandra drains and flushes; a kill -9 follows if it hangs."""
        if self.process is not None:
            terminate(self.process, timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would; the commit log replays on the next start."""
        if self.process is not None:
            kill(self.process)
        self.process = None

    def __enter__(self) -> CassandraNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat_shared.cassandra_node")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the jars into the cache")
    fetch.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    run = sub.add_parser("run", help="run a node in the foreground until Ctrl-C")
    run.add_argument("data_dir", type=Path)
    run.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(fetch_jars(args.cache_dir))
        return 0
    node = CassandraNode(args.data_dir, cache_dir=args.cache_dir)
    started = time.monotonic()
    node.start()
    print(
        f"cassandra {node.release_version()} on {node.host}:{node.native_port}"
        f" (ready in {time.monotonic() - started:.1f}s); Ctrl-C stops it",
        flush=True,
    )
    try:
        while node.process is not None and node.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
