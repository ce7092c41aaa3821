"""Production's Valkey: three servers behind three Sentinels, with TLS and a password that
only ever come from Secrets. What the rendered manifests promise, what the start scripts
write from them, what they decide from the answers of real Sentinels, and that Valkey
itself runs what they write."""

from __future__ import annotations

import inspect
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import chat_shared.store.migrate
from chat_shared import redis_topologies
from chat_shared.embedded_redis import EmbeddedValkey
from chat_shared.redis import connect_redis, replication_of
from chat_shared.redis_topologies import LocalSentinel
from chat_shared.settings import ChatSettings
from deploy.manifests import (
    K8S_DIR,
    NAMESPACE,
    Document,
    container_env,
    find,
    mounted_file,
    one,
    pod_labels,
    projected_keys,
    selects,
    served_service,
    workloads,
)
from tests.deploy.valkey_scripts import (
    PASSWORD,
    StartRun,
    client_sentinels,
    free_port,
    run_start_script,
    started_script,
    valkey_workload,
)

SENTINEL_OVERLAYS = ("production", "ingress")
SCRIPTS = K8S_DIR / "overlays" / "production" / "redis"
AUTH_SECRET = {"name": "chat-redis-auth", "key": "password"}
TLS_SECRET = "chat-redis-tls"
TLS_FILES = {"tls.crt", "tls.key", "ca.crt"}
SERVER_PORT, SENTINEL_PORT = 6379, 26379


@pytest.fixture(params=SENTINEL_OVERLAYS)
def sentinel_docs(request: pytest.FixtureRequest, rendered: dict[str, list[Document]]) -> Any:
    return rendered[str(request.param)]


@pytest.fixture
def production(rendered: dict[str, list[Document]]) -> list[Document]:
    return rendered["production"]


def pod_names(workload: Document, docs: list[Document]) -> list[str]:
    """The stable DNS name of every pod of a StatefulSet, through its headless Service."""
    service = one(docs, "Service", workload["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "pod DNS names need a headless Service"
    assert selects(service["spec"]["selector"], pod_labels(workload))
    return [
        f"{workload['metadata']['name']}-{index}.{service['metadata']['name']}"
        f".{NAMESPACE}.svc.cluster.local"
        for index in range(workload["spec"]["replicas"])
    ]


def redis_clients(docs: list[Document]) -> list[tuple[str, Document, Document]]:
    """(service, pod spec, container) of the three chat services."""
    return [
        (str(served_service(container)), spec, container)
        for _, spec in workloads(docs)
        for container in spec["containers"]
        if served_service(container) is not None
    ]


def env_item(container: Document, name: str) -> Document:
    (item,) = [item for item in container.get("env", []) if item["name"] == name]
    return dict(item)


def secret_behind(spec: Document, container: Document, path: str) -> tuple[str, str]:
    """(Secret, key) of the file a container sees at ``path``; fails if none holds it."""
    found = mounted_file(spec, container, path)
    assert found is not None, f"{container['name']}: nothing is mounted at {path}"
    volume, name = found
    assert "secret" in volume, f"{container['name']}: {path} is not from a Secret"
    keys = projected_keys(volume)
    return volume["secret"]["secretName"], name if keys is None else keys[name]


def probe_commands(container: Document) -> list[str]:
    return [
        " ".join(container[kind]["exec"]["command"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if "exec" in container.get(kind, {})
    ]


# -- real Valkey for the scripts to ask -----------------------------------------------
#
# The scripts ask the Sentinels by their DNS names; valkey_scripts' valkey-cli forwards
# every name a test maps to a real server on 127.0.0.1, and prints what that server
# answers. The Sentinels of LocalSentinel know the servers by 127.0.0.1 and a port, so
# that is the address they name, and the one the scripts write.

SERVER_DNS = [f"redis-{index}.redis-headless.{NAMESPACE}.svc.cluster.local" for index in range(3)]
SENTINEL_DNS = [
    f"redis-sentinel-{index}.redis-sentinel.{NAMESPACE}.svc.cluster.local" for index in range(3)
]
REDIS_0 = SERVER_DNS[0]
SENTINEL_0, SENTINEL_1, SENTINEL_2 = SENTINEL_DNS
# LocalSentinel writes its password into sentinel.conf between quotes it does not escape,
# so this one has no " and no \. PASSWORD, which has both, is what the servers and
# Sentinels the scripts configure themselves are checked with.
LOCAL_PASSWORD = "l0cal-s3cret $(z) `w`"


def quoted(password: str) -> str:
    """One double-quoted config argument, \\ and " escaped (Valkey's config syntax)."""
    return '"' + password.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class RealValkeys:
    """What a pod's start script may find when it asks the Sentinels. A role names one
    of these servers: ``sentinel-0`` to ``-2`` (LocalSentinel's, LOCAL_PASSWORD),
    ``named`` (a Sentinel that names its primary by host name), ``empty`` (a Sentinel
    that monitors nothing yet) and ``no-sentinel`` (a data server); the last three
    take PASSWORD."""

    failed_over: LocalSentinel  # its first primary is dead and its replica promoted
    named_primary: EmbeddedValkey
    named_sentinel: EmbeddedValkey
    empty_sentinel: EmbeddedValkey

    def server(self, role: str) -> EmbeddedValkey:
        if role.startswith("sentinel-"):
            return self.failed_over.sentinel_servers[int(role.removeprefix("sentinel-"))]
        return {
            "named": self.named_sentinel,
            "empty": self.empty_sentinel,
            "no-sentinel": self.named_primary,
        }[role]

    def port(self, role: str) -> int:
        port = self.server(role).port
        assert port is not None
        return port

    def primary(self, which: str | None) -> str | None:
        """The "host port" of a primary as a script writes it: ``redis-0`` (a brand-new
        deployment's), ``promoted`` (the one LocalSentinel's Sentinels name after the
        failover) or ``named``."""
        if which is None:
            return None
        return {
            "redis-0": lambda: f"{REDIS_0} {SERVER_PORT}",
            "promoted": lambda: f"127.0.0.1 {self.failed_over.master_port()}",
            "named": lambda: f"localhost {self.named_primary.port}",
        }[which]()

    def assert_answers(self, run: StartRun, roles: dict[str, str]) -> None:
        """Every answer the script got is what the real server behind that name says to
        ``SENTINEL get-master-addr-by-name``, as valkey-cli prints it."""
        for answer in run.answers:
            role = roles[answer["host"]]
            printed = str(answer["stdout"])
            if role == "no-sentinel":
                assert printed.startswith("ERR unknown command 'SENTINEL'"), printed
            elif role == "empty":
                assert printed == "\n", printed  # nil
            else:
                primary = self.primary("named" if role == "named" else "promoted")
                assert primary is not None
                assert printed == "\n".join(primary.split()) + "\n", printed


def _sentinel(folder: Path, lines: list[str]) -> EmbeddedValkey:
    folder.mkdir(parents=True)
    port = free_port()
    config = folder / "sentinel.conf"  # Sentinel rewrites it: must be writable
    config.write_text(
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                f"dir {folder}",
                f"logfile {folder / 'valkey.log'}",
                f"requirepass {quoted(PASSWORD)}",
                *lines,
            ]
        )
        + "\n"
    )
    return EmbeddedValkey(folder, port=port, config_file=config, extra_args=["--sentinel"])


@pytest.fixture(scope="module")
def valkeys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealValkeys]:
    root = tmp_path_factory.mktemp("valkeys")
    # Down after 2 s rather than 5, for a quicker failover. (LocalSentinel's warning of
    # a second failover, to a replica still resyncing, does not apply: once the replica
    # is promoted, no server the Sentinels know is left to promote.)
    local = LocalSentinel(root / "local", down_after_ms=2000, password=LOCAL_PASSWORD)
    others: list[EmbeddedValkey] = []
    try:
        local.start()
        first = local.servers[0]
        local.kill_primary()
        assert local.master_port() != first.port
        # The replicas the scripts start sync at once, not after 5 s (the wait for
        # more replicas to join a sync).
        no_sync_delay = ["CONFIG", "SET", "repl-diskless-sync-delay", "0"]
        redis_topologies.command(local.master_port(), *no_sync_delay, password=LOCAL_PASSWORD)
        named_primary = EmbeddedValkey(
            root / "named",
            port=free_port(),
            extra_args=["--requirepass", PASSWORD, "--repl-diskless-sync-delay", "0"],
        )
        others.append(named_primary.start())
        # Monitors its primary by a host name and names it by that name, as the
        # production Sentinels do (start-sentinel.sh); `localhost` is one that resolves.
        named_sentinel = _sentinel(
            root / "named-sentinel",
            [
                "sentinel resolve-hostnames yes",
                "sentinel announce-hostnames yes",
                f"sentinel monitor chat localhost {named_primary.port} 1",
                f"sentinel auth-pass chat {quoted(PASSWORD)}",
            ],
        )
        others.append(named_sentinel.start())
        empty_sentinel = _sentinel(root / "empty-sentinel", [])
        others.append(empty_sentinel.start())
        yield RealValkeys(local, named_primary, named_sentinel, empty_sentinel)
    finally:
        for server in reversed(others):
            server.stop()
        local.stop()


StartScript = Callable[..., StartRun]


@pytest.fixture
def start_script(tmp_path: Path) -> Iterator[StartScript]:
    """``start(docs, name, pod, hosts, password, ...)``: run the start script of pod
    ``pod`` until the real server it starts answers; stopped after the test."""
    runs: list[StartRun] = []

    def start(
        docs: list[Document],
        name: str,
        pod: str,
        hosts: dict[str, int] | None = None,
        password: str = PASSWORD,
        **options: Any,
    ) -> StartRun:
        run = run_start_script(
            tmp_path / pod, docs, name, pod, hosts, password, start=True, **options
        )
        runs.append(run)
        assert run.running, run.stderr
        return run

    yield start
    for run in runs:
        run.stop()


def sentinel_hosts(valkeys: RealValkeys, roles: dict[str, str]) -> dict[str, int]:
    """The forwarding of each Sentinel name to the real server playing ``role``."""
    return {f"{host}:{SENTINEL_PORT}": valkeys.port(role) for host, role in roles.items()}


def password_of(roles: dict[str, str]) -> str:
    local = {role.startswith("sentinel-") for role in roles.values()}
    assert len(local) <= 1, "one password per run"
    return LOCAL_PASSWORD if local == {True} else PASSWORD


def assert_no_password_on_command_lines(run: StartRun, password: str) -> None:
    for program, calls in run.calls.items():
        for call in calls:
            for fragment in password.split():
                assert fragment not in call, (program, call)
    if run.running:
        for fragment in password.split():
            assert fragment not in run.command_line()


def _client(port: int | None, password: str | None = PASSWORD) -> redis.Redis:
    # No retries: a refused password must fail at once, not after redis-py's backoff.
    assert port is not None
    return redis.Redis(port=port, password=password, socket_timeout=2, retry=Retry(NoBackoff(), 0))


def _eventually(check: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- the topology ---------------------------------------------------------------------


def test_three_servers_and_three_sentinels_each_on_its_own_node(
    sentinel_docs: list[Document],
) -> None:
    for name in ("redis", "redis-sentinel"):
        workload, spec, _ = valkey_workload(sentinel_docs, name)
        assert workload["spec"]["replicas"] == 3, name
        (term,) = spec["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["topologyKey"] == "kubernetes.io/hostname", name
        own = pod_labels(workload)
        assert selects(term["labelSelector"]["matchLabels"], own), name
        # Only its own kind: servers and Sentinels may share a node with each other.
        other = "redis-sentinel" if name == "redis" else "redis"
        assert not selects(
            term["labelSelector"]["matchLabels"],
            pod_labels(valkey_workload(sentinel_docs, other)[0]),
        ), name


def test_each_server_keeps_its_own_data_at_production_size(
    sentinel_docs: list[Document],
) -> None:
    servers, _, container = valkey_workload(sentinel_docs, "redis")
    (claim,) = servers["spec"]["volumeClaimTemplates"]  # one PVC per pod
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert container["resources"]["limits"]["memory"] == "4Gi"
    assert env_item(container, "MAXMEMORY")["value"] == "3gb"
    sentinels, spec, container = valkey_workload(sentinel_docs, "redis-sentinel")
    assert not sentinels["spec"].get("volumeClaimTemplates")
    found = mounted_file(spec, container, env_item(container, "VALKEY_CONFIG_DIR")["value"] + "/x")
    assert found is not None and "emptyDir" in found[0], "Sentinel rewrites its config there"


def test_no_manual_replica_and_no_service_over_every_server(
    sentinel_docs: list[Document],
) -> None:
    assert not find(sentinel_docs, "StatefulSet", "redis-replica")
    assert not find(sentinel_docs, "Service", "redis-replica")
    # A Service over the three servers would send writes to replicas.
    servers = pod_labels(one(sentinel_docs, "StatefulSet", "redis"))
    for service in find(sentinel_docs, "Service"):
        if selects(service["spec"].get("selector", {}), servers):
            assert service["spec"]["clusterIP"] == "None", service["metadata"]["name"]
    for name in ("redis-headless", "redis-sentinel"):
        # Names must resolve before the pods are ready: a replica's first sync, the
        # Sentinels finding each other at start.
        assert one(sentinel_docs, "Service", name)["spec"]["publishNotReadyAddresses"] is True


def test_dev_keeps_one_valkey_and_no_sentinel(rendered: dict[str, list[Document]]) -> None:
    docs = rendered["dev"]
    assert not find(docs, "StatefulSet", "redis-sentinel")
    assert one(docs, "StatefulSet", "redis")["spec"]["replicas"] == 1
    for _, _, container in redis_clients(docs):
        env = container_env(container, docs)
        assert env.get("CHAT_REDIS_MODE", "single") == "single"
        assert env["CHAT_REDIS_URL"] == "redis://redis:6379/0"


def test_disruption_budgets_let_one_valkey_pod_go_at_a_time(
    sentinel_docs: list[Document],
) -> None:
    for name in ("redis", "redis-sentinel"):
        labels = pod_labels(one(sentinel_docs, "StatefulSet", name))
        (budget,) = [
            b
            for b in find(sentinel_docs, "PodDisruptionBudget")
            if selects(b["spec"]["selector"]["matchLabels"], labels)
        ]
        assert budget["spec"] == {**budget["spec"], "maxUnavailable": 1}, name
        assert "minAvailable" not in budget["spec"], name


# -- how the services find the primary ------------------------------------------------


def test_services_ask_exactly_the_sentinel_pods(sentinel_docs: list[Document]) -> None:
    sentinels, _, container = valkey_workload(sentinel_docs, "redis-sentinel")
    expected = [f"{name}:{SENTINEL_PORT}" for name in pod_names(sentinels, sentinel_docs)]
    assert [p["containerPort"] for p in container["ports"]] == [SENTINEL_PORT]
    service = one(sentinel_docs, "Service", sentinels["spec"]["serviceName"])
    assert [p["port"] for p in service["spec"]["ports"]] == [SENTINEL_PORT]
    for name, _, client in redis_clients(sentinel_docs):
        env = container_env(client, sentinel_docs)
        assert env["CHAT_REDIS_MODE"] == "sentinel", name
        assert client_sentinels(env) == expected, name
        assert env["CHAT_REDIS_MASTER"] == env_item(container, "MASTER_NAME")["value"], name
        assert env["CHAT_REDIS_URL"] == "", f"{name}: a URL would name no server here"


def test_servers_and_sentinels_use_the_names_the_clients_use(
    sentinel_docs: list[Document], tmp_path: Path
) -> None:
    clients = client_sentinels(container_env(redis_clients(sentinel_docs)[0][2], sentinel_docs))
    servers = pod_names(one(sentinel_docs, "StatefulSet", "redis"), sentinel_docs)
    for name in ("redis", "redis-sentinel"):
        workload = one(sentinel_docs, "StatefulSet", name)
        for index, own_name in enumerate(pod_names(workload, sentinel_docs)):
            run = run_start_script(
                tmp_path / f"{name}-{index}", sentinel_docs, name, f"{name}-{index}"
            )
            assert run.returncode == 0, run.stderr
            asked = {
                f"{call.split(' -h ')[1].split()[0]}:{SENTINEL_PORT}"
                for call in run.calls["valkey-cli"]
            }
            # A Sentinel asks the others, a server asks all of them.
            assert asked == set(clients) - {f"{own_name}:{SENTINEL_PORT}"}, (name, index)
            announced = (
                "sentinel announce-ip" if name == "redis-sentinel" else "replica-announce-ip"
            )
            assert run.directive(announced) == [own_name]
            # With no Sentinel answering, the first server is the primary.
            expected = [f"{servers[0]} {SERVER_PORT}"]
            if name == "redis-sentinel":
                assert run.directive("sentinel monitor chat") == [f"{expected[0]} 2"]
            else:
                assert run.directive("replicaof") == ([] if index == 0 else expected)


def test_production_acknowledges_a_send_once_one_replica_has_it(
    rendered: dict[str, list[Document]],
) -> None:
    for overlay, docs in rendered.items():
        for name, _, container in redis_clients(docs):
            env = container_env(container, docs)
            wanted = "1" if overlay in SENTINEL_OVERLAYS else None
            assert env.get("CHAT_REDIS_MIN_REPLICAS") == wanted, (overlay, name)


def test_the_services_build_a_verifying_tls_sentinel_client(
    sentinel_docs: list[Document], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The manifest's values through the code that uses them: settings, then
    connect_redis (which connects to nothing until the first command)."""
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("CHAT_SECRETS_DIR", str(tmp_path / "no-secrets"))
    (name, _, container) = redis_clients(sentinel_docs)[0]
    env = container_env(container, sentinel_docs)
    for variable, value in env.items():
        monkeypatch.setenv(variable, "from-the-secret" if value is None else value)
    settings = ChatSettings()
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "from-the-secret"
    replication = replication_of(settings)
    assert replication is not None and replication.replicas == 1
    client = connect_redis(settings)
    pool: Any = client.connection_pool
    assert pool.service_name == env["CHAT_REDIS_MASTER"]
    asked = []
    for sentinel in pool.sentinel_manager.sentinels:
        options = sentinel.connection_pool.connection_kwargs
        asked.append(f"{options['host']}:{options['port']}")
        # The Sentinels' certificate is checked, host name included, against the CA.
        assert options["ssl_ca_certs"] == env["CHAT_REDIS_TLS_CA_FILE"], name
        assert options["ssl_check_hostname"] is True, name
        assert options["password"] == "from-the-secret", name
    assert asked == client_sentinels(env)
    # And so is the primary's, by the name the Sentinels report.
    assert pool.connection_kwargs["ssl_ca_certs"] == env["CHAT_REDIS_TLS_CA_FILE"]
    assert "SSL" in pool.connection_class.__name__


# -- the password -----------------------------------------------------------------------


def test_the_password_comes_from_the_secret_to_whoever_needs_it(
    sentinel_docs: list[Document],
) -> None:
    for name, _, container in redis_clients(sentinel_docs):
        source = env_item(container, "CHAT_REDIS_PASSWORD")["valueFrom"]
        assert source == {"secretKeyRef": AUTH_SECRET}, name
    for name in ("redis", "redis-sentinel"):
        _, _, container = valkey_workload(sentinel_docs, name)
        # valkey-cli (the start script, the probes) reads it from REDISCLI_AUTH.
        source = env_item(container, "REDISCLI_AUTH")["valueFrom"]
        assert source == {"secretKeyRef": AUTH_SECRET}, name
    # chat-migrate talks to the store only, so it is not given the password.
    assert "redis" not in inspect.getsource(chat_shared.store.migrate).lower()
    (migrate,) = find(sentinel_docs, "Job", "chat-migrate")
    assert "CHAT_REDIS_PASSWORD" not in container_env(
        migrate["spec"]["template"]["spec"]["containers"][0], sentinel_docs
    )


def _walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _walk(child)


SECRET_NAME = re.compile(r"PASSWORD|PASSWD|REDISCLI_AUTH|SECRET", re.IGNORECASE)
# A config line that sets a password, and what follows the directive.
PASSWORD_LINE = re.compile(r"\b(?:requirepass|masterauth|auth-pass \S+) (.*)$")


def test_no_password_is_written_anywhere_in_the_manifests(docs: list[Document]) -> None:
    assert not find(docs, "Secret")
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        # No variable that looks like a secret has a value of its own.
        for node in _walk(doc):
            if isinstance(node, dict) and "name" in node and "value" in node:
                assert not SECRET_NAME.search(str(node["name"])), f"{where}: {node['name']}"
        if doc["kind"] != "ConfigMap":
            continue
        for key, value in doc.get("data", {}).items():
            assert not SECRET_NAME.search(key), f"{where}: {key}"
            # The scripts write the password from the environment, never a literal.
            for line in str(value).splitlines():
                match = PASSWORD_LINE.search(line)
                if match:
                    assert match[1].startswith('$(quoted "$REDISCLI_AUTH")'), f"{where}: {line}"
    for workload, spec in workloads(docs):
        for container in spec["containers"]:
            words = [
                *map(str, container.get("command", [])),
                *map(str, container.get("args", [])),
                *probe_commands(container),
            ]
            flags = {"-a", "--pass", "--requirepass", "--masterauth", "requirepass"}
            assert not flags & {w for text in words for w in text.split()}, workload["metadata"]


@pytest.mark.parametrize("name", ["redis", "redis-sentinel"])
def test_the_scripts_keep_the_password_off_every_command_line(
    production: list[Document], tmp_path: Path, valkeys: RealValkeys, name: str
) -> None:
    # The first Sentinel the pod asks is a real one that knows no primary yet: its nil
    # answer comes back only if valkey-cli authenticated, with the password the
    # environment gave it (a NOAUTH error otherwise).
    roles = {SENTINEL_0: "empty"}
    run = run_start_script(tmp_path, production, name, f"{name}-1", sentinel_hosts(valkeys, roles))
    assert run.returncode == 0, run.stderr
    assert run.answers, "no Sentinel was reached"
    valkeys.assert_answers(run, roles)
    assert run.errors == "", "valkey-cli did not get the password from REDISCLI_AUTH"
    assert_no_password_on_command_lines(run, PASSWORD)
    assert run.mode == "600"
    # One double-quoted argument, \ and " escaped (Valkey's config syntax).
    wanted = ["requirepass", "masterauth"] if name == "redis" else ["requirepass"]
    for directive in wanted:
        assert run.directive(directive) == [quoted(PASSWORD)], directive
    if name == "redis-sentinel":
        assert run.directive("sentinel auth-pass chat") == [quoted(PASSWORD)]


@pytest.mark.parametrize("name", ["redis", "redis-sentinel"])
def test_a_password_with_a_newline_is_refused(
    production: list[Document], tmp_path: Path, name: str
) -> None:
    run = run_start_script(tmp_path, production, name, f"{name}-0", password="secret\n")
    assert run.returncode != 0 and run.config is None
    assert "newline" in run.stderr


# -- TLS --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "port"), [("redis", SERVER_PORT), ("redis-sentinel", SENTINEL_PORT)]
)
def test_valkey_speaks_tls_only_with_the_mounted_certificate(
    sentinel_docs: list[Document], tmp_path: Path, name: str, port: int
) -> None:
    _, spec, container = valkey_workload(sentinel_docs, name)
    run = run_start_script(tmp_path, sentinel_docs, name, f"{name}-0")
    assert run.returncode == 0, run.stderr
    assert run.directive("port") == ["0"], "no plain-text port"
    assert run.directive("tls-port") == [str(port)]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert run.directive("tls-replication") == ["yes"]
    assert run.directive("tls-auth-clients") == ["no"], "clients have no certificates"
    files = {
        directive: run.directive(directive)[0]
        for directive in ("tls-cert-file", "tls-key-file", "tls-ca-cert-file")
    }
    assert {secret_behind(spec, container, path) for path in files.values()} == {
        (TLS_SECRET, key) for key in TLS_FILES
    }
    # The probes verify the server against the same CA.
    for command in probe_commands(container):
        assert "--tls" in command.split(), command
        cacert = command.split("--cacert ")[1].split()[0]
        assert secret_behind(spec, container, cacert) == (TLS_SECRET, "ca.crt")
        assert f"-p {port}" in command


def test_services_verify_valkey_against_the_mounted_ca_only(
    sentinel_docs: list[Document],
) -> None:
    for name, spec, container in redis_clients(sentinel_docs):
        env = container_env(container, sentinel_docs)
        assert env["CHAT_REDIS_TLS"] == "true", name
        ca_file = str(env["CHAT_REDIS_TLS_CA_FILE"])
        assert secret_behind(spec, container, ca_file) == (TLS_SECRET, "ca.crt"), name
        # The CA and nothing else: the key belongs to the servers.
        found = mounted_file(spec, container, ca_file)
        assert found is not None and projected_keys(found[0]) == {"ca.crt": "ca.crt"}, name
        mount = next(m for m in container["volumeMounts"] if m["name"] == found[0]["name"])
        assert mount["readOnly"] is True
        assert PurePosixPath(ca_file).parent == PurePosixPath(mount["mountPath"])


# -- the start scripts ------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_start_scripts_are_valid_posix_shell(script: Path) -> None:
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_pods_run_the_scripts_of_the_overlay(production: list[Document]) -> None:
    for name, script in (("redis", "start-server.sh"), ("redis-sentinel", "start-sentinel.sh")):
        _, spec, container = valkey_workload(production, name)
        assert started_script(production, spec, container) == (SCRIPTS / script).read_text()
        assert "args" not in container, f"{name}: settings belong in the config file"
        scripts = mounted_file(spec, container, container["command"][1])
        assert scripts is not None
        mount = next(m for m in container["volumeMounts"] if m["name"] == scripts[0]["name"])
        assert mount["readOnly"] is True


# What LocalSentinel's three Sentinels answer: the replica they promoted.
FAILED_OVER = {SENTINEL_0: "sentinel-0", SENTINEL_1: "sentinel-1", SENTINEL_2: "sentinel-2"}


def _replication(port: int | None, password: str) -> dict[str, Any]:
    return dict(_client(port, password).info("replication"))


@pytest.mark.parametrize(
    ("pod", "sentinels", "follows", "start"),
    [
        pytest.param("redis-0", {}, None, True, id="brand-new: redis-0 is the primary"),
        pytest.param("redis-2", {}, "redis-0", False, id="brand-new: the others follow redis-0"),
        pytest.param(
            "redis-0",
            FAILED_OVER,
            "promoted",
            True,
            id="after a failover the old primary rejoins as a replica",
        ),
        pytest.param(
            "redis-0",
            {SENTINEL_1: "sentinel-1", SENTINEL_2: "sentinel-2"},
            "promoted",
            False,
            id="a Sentinel that is down is skipped",
        ),
        pytest.param(
            "redis-1",
            {SENTINEL_0: "named"},
            "named",
            True,
            id="a primary named by host name",
        ),
        pytest.param(
            "redis-1",
            {SENTINEL_0: "no-sentinel", SENTINEL_1: "named"},
            "named",
            False,
            id="an answer that is no address is skipped",
        ),
        pytest.param("redis-1", {SENTINEL_0: "empty"}, "redis-0", False, id="nil"),
    ],
)
def test_a_server_follows_the_primary_the_sentinels_name(
    production: list[Document],
    tmp_path: Path,
    valkeys: RealValkeys,
    start_script: StartScript,
    pod: str,
    sentinels: dict[str, str],
    follows: str | None,
    start: bool,
) -> None:
    password = password_of(sentinels)
    hosts = sentinel_hosts(valkeys, sentinels)
    if start:
        run = start_script(production, "redis", pod, hosts, password)
    else:
        run = run_start_script(tmp_path / pod, production, "redis", pod, hosts, password)
        assert run.returncode == 0, run.stderr
    primary = valkeys.primary(follows)
    assert run.directive("replicaof") == ([] if primary is None else [primary])
    assert run.calls["valkey-server"] == [f"{tmp_path / pod / 'config' / 'valkey.conf'}"]
    valkeys.assert_answers(run, sentinels)
    assert run.errors == "", "a Sentinel refused the password"
    assert_no_password_on_command_lines(run, password)
    if not sentinels or set(sentinels.values()) == {"empty"}:
        # A few rounds before a silent set of Sentinels counts as a new deployment.
        assert len(run.calls["valkey-cli"]) == 9 and run.calls["sleep"] == ["2", "2"]
    if not start:
        return
    if primary is None:
        assert _replication(run.port, password)["role"] == "master"
        return
    # The server replicates the primary the Sentinels named, with the password of the
    # file (masterauth).
    host, port = primary.split()
    replication = _eventually(
        lambda: (r := _replication(run.port, password))["master_link_status"] == "up" and r,
        "the replica to sync with the primary the Sentinels named",
    )
    assert (replication["master_host"], replication["master_port"]) == (host, int(port))


def test_the_primary_the_sentinels_name_does_not_replicate_itself(
    production: list[Document], valkeys: RealValkeys, start_script: StartScript
) -> None:
    """In a cluster the Sentinels name the primary by the DNS name it announces, which
    is its pod's ANNOUNCE_HOST. Pod names do not resolve here, so the one compromise:
    this Sentinel names its primary `localhost`, and the pod is given `localhost` as
    its ANNOUNCE_HOST (redis-1 above, with its own name, follows the same answer)."""
    roles = {SENTINEL_0: "named"}
    run = start_script(
        production,
        "redis",
        "redis-2",
        sentinel_hosts(valkeys, roles),
        announce_host="localhost",
    )
    valkeys.assert_answers(run, roles)
    assert len(run.answers) == 1 and run.errors == ""
    assert run.directive("replica-announce-ip") == ["localhost"]
    assert run.directive("replicaof") == []
    assert _replication(run.port, PASSWORD)["role"] == "master"


@pytest.mark.parametrize(
    ("pod", "sentinels", "monitors", "start"),
    [
        pytest.param("redis-sentinel-0", {}, "redis-0", False, id="brand-new"),
        pytest.param(
            "redis-sentinel-0",
            FAILED_OVER,
            "promoted",
            True,
            id="restarted: the primary the others know",
        ),
        pytest.param(
            "redis-sentinel-1",
            {SENTINEL_1: "sentinel-1"},
            "redis-0",
            False,
            id="never asks itself",
        ),
        pytest.param(
            "redis-sentinel-0",
            {SENTINEL_1: "empty", SENTINEL_2: "named"},
            "named",
            False,
            id="a Sentinel that knows no primary is skipped",
        ),
    ],
)
def test_a_sentinel_monitors_the_primary_the_others_name(
    production: list[Document],
    tmp_path: Path,
    valkeys: RealValkeys,
    start_script: StartScript,
    pod: str,
    sentinels: dict[str, str],
    monitors: str,
    start: bool,
) -> None:
    password = password_of(sentinels)
    hosts = sentinel_hosts(valkeys, sentinels)
    if start:
        run = start_script(production, "redis-sentinel", pod, hosts, password)
    else:
        run = run_start_script(tmp_path / pod, production, "redis-sentinel", pod, hosts, password)
        assert run.returncode == 0, run.stderr
    primary = valkeys.primary(monitors)
    assert primary is not None
    assert run.directive("sentinel monitor chat") == [f"{primary} 2"]
    assert run.calls["getent"] == [f"hosts {primary.split()[0]}"], "waits until it resolves"
    own_name = SENTINEL_DNS[int(pod.removeprefix("redis-sentinel-"))]
    assert all(answer["host"] != own_name for answer in run.answers)
    valkeys.assert_answers(run, sentinels)
    assert run.errors == "", "a Sentinel refused the password"
    assert_no_password_on_command_lines(run, password)
    lines = run.lines()
    # Sentinel resolves the monitored name as it reads the line: the switch comes first.
    assert lines.index("sentinel resolve-hostnames yes") < lines.index(
        f"sentinel monitor chat {primary} 2"
    )
    assert run.directive("sentinel announce-hostnames") == ["yes"]
    assert run.directive("sentinel down-after-milliseconds chat") == ["5000"]
    assert run.directive("sentinel failover-timeout chat") == ["60000"]
    assert run.directive("sentinel parallel-syncs chat") == ["1"]
    assert run.directive("dir") == [str(tmp_path / pod / "config")]
    assert run.calls["valkey-server"] == [
        f"{tmp_path / pod / 'config' / 'sentinel.conf'} --sentinel"
    ]
    if not start:
        return
    # It watches the promoted primary (authenticated: INFO gave it the run id) and
    # finds LocalSentinel's three Sentinels through it.
    sentinel = _client(run.port, password)
    state = _eventually(
        lambda: (s := sentinel.sentinel_master("chat"))["num-other-sentinels"] == 3 and s,
        "the Sentinel to find the other three",
    )
    assert (state["ip"], state["port"]) == ("127.0.0.1", valkeys.failed_over.master_port())
    assert state["runid"] and state["is_master"] and not state["is_sdown"]


# -- a brand-new deployment on real Valkey --------------------------------------------


def test_a_brand_new_deployment_runs_on_real_valkey(
    production: list[Document], start_script: StartScript
) -> None:
    """No Sentinel answers yet: redis-0 starts as the primary, redis-1 as its replica,
    a Sentinel monitors redis-0, each on the file its script wrote (less TLS). Every
    directive is one Valkey knows, and the password written into the files, escaped,
    opens the primary to the replica (masterauth) and to the Sentinel (auth-pass)."""
    primary = start_script(production, "redis", "redis-0")
    assert primary.directive("replicaof") == []
    _eventually(_client(primary.port).ping, "the primary")
    with pytest.raises(redis.AuthenticationError):
        _client(primary.port, "wrong").ping()
    assert primary.port is not None
    redis_0 = {f"{REDIS_0}:{SERVER_PORT}": primary.port}
    replica = start_script(production, "redis", "redis-1", redis_0)
    assert replica.directive("replicaof") == [f"{REDIS_0} {SERVER_PORT}"]
    _eventually(
        lambda: _replication(replica.port, PASSWORD)["master_link_status"] == "up",
        "the replica to sync",
    )
    # Started once the replica is in, so the Sentinel's first INFO of the primary
    # lists it. (The replica's announced name resolves in a cluster only, so this
    # Sentinel cannot reach the replica itself; knowing of it is enough here.)
    started = start_script(production, "redis-sentinel", "redis-sentinel-0", redis_0)
    assert started.directive("sentinel monitor chat") == [f"{REDIS_0} {SERVER_PORT} 2"]
    sentinel = _client(started.port)
    state = _eventually(
        lambda: (s := sentinel.sentinel_master("chat"))["num-slaves"] == 1 and s,
        "the Sentinel to see the primary and its replica",
    )
    assert state["runid"] and state["is_master"] and not state["is_sdown"]
    with pytest.raises(redis.AuthenticationError):  # NOAUTH: requirepass
        _client(started.port, None).sentinel_master("chat")
    for run in (primary, replica, started):
        assert_no_password_on_command_lines(run, PASSWORD)
