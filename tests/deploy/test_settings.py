"""The manifests' CHAT_ variables against the settings classes the code reads them with.

A misspelt variable is silently ignored by the services (extra settings are allowed),
so only a test comparing the two catches it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from uvicorn.middleware.proxy_headers import _TrustedHosts

import chat_shared.serve
import chat_shared.settings
from deploy.manifests import (
    NAMESPACE,
    Document,
    all_containers,
    container_env,
    find,
    pod_labels,
    selects,
    served_service,
    services_by_name,
    workloads,
)

SETTINGS_CLASSES = {
    "gateway": "chat_gateway.settings:GatewaySettings",
    "auth": "chat_auth.settings:AuthSettings",
    "history": "chat_history.settings:HistorySettings",
    # chat-migrate builds the shared settings only.
    "migrate": "chat_shared.settings:ChatSettings",
}

# Settings whose code default only makes sense on one machine (loopback URLs, SQLite,
# an embedded Redis, generated keys): the cluster must set every one of them.
MUST_SET_EVERYWHERE = {
    "store",
    "cassandra_hosts",
    "cassandra_local_dc",
    "cassandra_replication",
    "cassandra_consistency",
    "data_dir",
}
MUST_SET = {
    "gateway": MUST_SET_EVERYWHERE | {"jwks_url", "history_url", "gateway_id"},
    "auth": MUST_SET_EVERYWHERE | {"jwks_url", "signing_keys_dir", "signing_keys_generate"},
    "history": MUST_SET_EVERYWHERE | {"jwks_url", "auth_url"},
    "migrate": MUST_SET_EVERYWHERE,
}
# chat-migrate only ever talks to the store.
USES_REDIS = {"gateway", "auth", "history"}
# What finding and reaching Redis takes, by CHAT_REDIS_MODE (an empty URL means an
# embedded Valkey, which the cluster never has).
MUST_SET_FOR_REDIS = {
    "single": {"redis_url"},
    "sentinel": {
        "redis_sentinels",
        "redis_master",
        "redis_password",
        "redis_tls",
        "redis_tls_ca_file",
    },
}

_ENV_READ = re.compile(r"""os\.environ\.get\(\s*["'](CHAT_[A-Z0-9_]+)["']""")


def launcher_variables() -> set[str]:
    """CHAT_ variables read straight from the environment by the launcher and the
    settings loader, outside any settings class."""
    sources = inspect.getsource(chat_shared.serve) + inspect.getsource(chat_shared.settings)
    return set(_ENV_READ.findall(sources))


def settings_class(role: str) -> type[chat_shared.settings.ChatSettings]:
    module, name = SETTINGS_CLASSES[role].split(":")
    cls: type[chat_shared.settings.ChatSettings] = getattr(importlib.import_module(module), name)
    return cls


def chat_containers(docs: list[Document]) -> list[tuple[str, str, dict[str, str | None]]]:
    """(role, where, environment) of every container running the chat image."""
    found = []
    for workload, spec in workloads(docs):
        for container in spec["containers"]:
            role = served_service(container)
            if role is None and container.get("command") == ["chat-migrate"]:
                role = "migrate"
            if role is not None:
                where = f"{workload['kind']}/{workload['metadata']['name']}"
                found.append((role, where, container_env(container, docs)))
    return found


def field_name(variable: str) -> str:
    return variable.removeprefix("CHAT_").lower()


def test_the_launcher_reads_the_variables_the_manifests_rely_on() -> None:
    # Guards the derivation above: if the launcher stopped reading these from the
    # environment, the settings test below would accept them for the wrong reason.
    assert {
        "CHAT_HOST",
        "CHAT_SHUTDOWN_GRACE_SECONDS",
        "CHAT_MAX_FRAME_BYTES",
        "CHAT_SECRETS_DIR",
    } <= launcher_variables()


def test_every_role_runs_in_every_overlay(docs: list[Document]) -> None:
    assert {role for role, _, _ in chat_containers(docs)} == set(SETTINGS_CLASSES)


def test_every_chat_variable_is_a_setting_of_its_service(docs: list[Document]) -> None:
    launcher = launcher_variables()
    unknown = []
    for role, where, env in chat_containers(docs):
        fields = settings_class(role).model_fields
        for variable in env:
            if not variable.startswith("CHAT_"):
                continue
            if field_name(variable) not in fields and variable not in launcher:
                unknown.append(f"{where}: {variable}")
    assert not unknown, f"set but read by nothing: {unknown}"


def test_settings_without_a_cluster_default_are_set(docs: list[Document]) -> None:
    missing = []
    for role, where, env in chat_containers(docs):
        fields = settings_class(role).model_fields
        wanted = set(MUST_SET[role])
        if role in USES_REDIS:
            wanted |= MUST_SET_FOR_REDIS[str(env.get("CHAT_REDIS_MODE") or "single")]
        for name in sorted(wanted):
            assert name in fields, f"{SETTINGS_CLASSES[role]} has no field {name}"
            variable = f"CHAT_{name.upper()}"
            # Present, and not empty (a Secret's value is known only in the cluster).
            if variable not in env or env[variable] == "":
                missing.append(f"{where}: {variable}")
    assert not missing, f"left at their single-machine default: {missing}"


def test_settings_classes_accept_the_manifest_values(
    docs: list[Document], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Outside the repository (no .env) and with no secrets folder, so only the
    # manifest's values reach the class.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHAT_SECRETS_DIR", str(tmp_path / "no-secrets"))
    for role, where, env in chat_containers(docs):
        with monkeypatch.context() as scoped:
            for variable, value in env.items():
                # Downward-API values exist only in a pod; any name stands in for them.
                scoped.setenv(variable, "pod-0" if value is None else value)
            settings = settings_class(role)()
        assert settings.store == "cassandra", where
        assert settings.cassandra_hosts, where
        assert not str(settings.data_dir).startswith("."), where


def _service_for(url_host: str, port: int, docs: list[Document]) -> set[str]:
    """The launcher roles of the pods behind ``url_host:port`` (empty if none)."""
    service = services_by_name(docs).get(url_host)
    assert service is not None, f"no Service named {url_host}"
    assert port in {p["port"] for p in service["spec"]["ports"]}, f"{url_host} has no {port}"
    roles = set()
    for workload, spec in workloads(docs):
        if selects(service["spec"]["selector"], pod_labels(workload)):
            roles |= {served_service(c) or c["name"] for c in spec["containers"]}
    return roles


def test_service_urls_reach_the_service_they_name(docs: list[Document]) -> None:
    expected_role = {
        "CHAT_JWKS_URL": "auth",
        "CHAT_AUTH_URL": "auth",
        "CHAT_HISTORY_URL": "history",
    }
    for _, where, env in chat_containers(docs):
        for variable, role in expected_role.items():
            if variable not in env:
                continue
            url = urlsplit(str(env[variable]))
            assert url.scheme == "http" and url.hostname and url.port, (where, variable)
            assert chat_shared.serve.SERVICES[role][1] == url.port, (where, variable)
            assert _service_for(url.hostname, url.port, docs) == {role}, (where, variable)
        if env.get("CHAT_REDIS_MODE", "single") == "single":
            redis = urlsplit(str(env["CHAT_REDIS_URL"]))
            assert redis.scheme == "redis" and redis.hostname and redis.port
            assert _service_for(redis.hostname, redis.port, docs) == {"valkey"}, where
            continue
        # Sentinel mode: each address is one Sentinel pod; the primary is their answer.
        assert env["CHAT_REDIS_URL"] == "", where
        for address in json.loads(str(env["CHAT_REDIS_SENTINELS"])):
            host, _, port = str(address).rpartition(":")
            assert _pod_for(host, int(port), docs) == {"sentinel"}, (where, address)


def _pod_for(dns_name: str, port: int, docs: list[Document]) -> set[str]:
    """The containers of the one StatefulSet pod named ``<pod>.<service>.<namespace>.svc
    .cluster.local`` that listen on ``port`` (empty if none)."""
    pod, service_name, namespace, *rest = dns_name.split(".")
    assert namespace == NAMESPACE and rest == ["svc", "cluster", "local"], dns_name
    service = services_by_name(docs).get(service_name)
    assert service is not None and service["spec"]["clusterIP"] == "None", dns_name
    assert port in {p["port"] for p in service["spec"]["ports"]}, f"{service_name} has no {port}"
    for workload in find(docs, "StatefulSet"):
        name, _, index = pod.rpartition("-")
        if workload["spec"]["serviceName"] != service_name or workload["metadata"]["name"] != name:
            continue
        assert selects(service["spec"]["selector"], pod_labels(workload)), dns_name
        assert 0 <= int(index) < workload["spec"]["replicas"], f"{dns_name}: no such pod"
        return {
            container["name"]
            for container in workload["spec"]["template"]["spec"]["containers"]
            if port in {p["containerPort"] for p in container.get("ports", [])}
        }
    return set()


def test_cassandra_contact_points_are_the_scylla_nodes(
    docs: list[Document], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for role, where, env in chat_containers(docs):
        monkeypatch.setenv("CHAT_CASSANDRA_HOSTS", str(env["CHAT_CASSANDRA_HOSTS"]))
        settings = settings_class(role)()
        for host in settings.cassandra_hosts:
            assert _service_for(host, settings.cassandra_port, docs) == {"scylla"}, where


def test_gateway_id_is_the_pod_name(docs: list[Document]) -> None:
    gateway = find(docs, "Deployment", "gateway")[0]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    source = next(item for item in container["env"] if item["name"] == "CHAT_GATEWAY_ID")
    assert source["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_auth_reads_keys_from_the_mounted_secret_only(docs: list[Document]) -> None:
    auth = find(docs, "Deployment", "auth")[0]
    spec = auth["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = container_env(container, docs)
    assert env["CHAT_SIGNING_KEYS_GENERATE"] == "false"
    secret_volumes = {
        v["name"]
        for v in spec["volumes"]
        if v.get("secret", {}).get("secretName") == "chat-signing-keys"
    }
    mounts = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in secret_volumes}
    assert mounts == {env["CHAT_SIGNING_KEYS_DIR"]}
    assert not find(docs, "Secret"), "no Secret may be committed with the manifests"


def test_uvicorn_frame_cap_matches_the_gateway_setting(
    docs: list[Document], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    gateway = find(docs, "Deployment", "gateway")[0]
    env = container_env(gateway["spec"]["template"]["spec"]["containers"][0], docs)
    for variable, value in env.items():
        monkeypatch.setenv(variable, "pod-0" if value is None else value)
    options = chat_shared.serve.uvicorn_options("gateway", "0.0.0.0", 8000)
    assert options["ws_max_size"] == settings_class("gateway")().max_frame_bytes


def test_forwarded_addresses_are_read_from_the_right_end_only(docs: list[Document]) -> None:
    """The per-address limits key on the client address the edge appended; a trusted
    peer list of "*" would hand them the leftmost X-Forwarded-For entry, which any
    client can forge."""
    for workload, spec in workloads(docs):
        for container in all_containers(spec):
            env = container_env(container, docs)
            allowed = env.get("CHAT_FORWARDED_ALLOW_IPS")
            if env.get("CHAT_TRUST_PROXY_HEADERS") != "true":
                continue
            assert allowed and "*" not in allowed, workload["metadata"]["name"]
            trusted = _TrustedHosts(allowed)
            forged = "6.6.6.6, 203.0.113.9, 10.1.2.3"  # client-written, edge-added, a hop
            assert trusted.get_trusted_client_address(forged)[0] == "203.0.113.9"
