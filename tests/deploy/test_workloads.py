"""Pods: ports and probes that match the apps, hardened containers, clean shutdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chat_shared.serve
from chat_shared.web.observability import ServiceMetrics, observability_router
from deploy.manifests import (
    Document,
    all_containers,
    container_env,
    find,
    flag_value,
    served_service,
    workloads,
)
from tests.deploy.valkey_scripts import run_start_script

CPU_AND_MEMORY = {"cpu", "memory"}


def service_containers(docs: list[Document]) -> list[tuple[str, Document, Document]]:
    """(service, pod spec, container) for the three chat services."""
    found = []
    for _, spec in workloads(docs):
        for container in spec["containers"]:
            service = served_service(container)
            if service is not None:
                found.append((service, spec, container))
    return found


def shared_probe_routes() -> set[str]:
    router = observability_router(ServiceMetrics("probe-paths"), {})
    return {str(getattr(route, "path", "")) for route in router.routes}


def named_port(container: Document, port: Any) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def test_each_service_runs_once_per_overlay(docs: list[Document]) -> None:
    services = sorted(service for service, _, _ in service_containers(docs))
    assert services == sorted(chat_shared.serve.SERVICES)


def test_containers_listen_on_the_launcher_port(docs: list[Document]) -> None:
    for service, _, container in service_containers(docs):
        port = chat_shared.serve.SERVICES[service][1]
        assert flag_value(container, "--port") == str(port), service
        assert flag_value(container, "--host") == "0.0.0.0", service
        assert [p["containerPort"] for p in container["ports"]] == [port], service


def test_probes_use_paths_every_service_serves(docs: list[Document]) -> None:
    routes = shared_probe_routes()
    for service, _, container in service_containers(docs):
        paths = {
            kind: container[kind]["httpGet"]["path"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert paths == {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }, service
        assert set(paths.values()) <= routes, service
        for kind in paths:
            port = named_port(container, container[kind]["httpGet"]["port"])
            assert port == chat_shared.serve.SERVICES[service][1], (service, kind)


def _effective(spec: Document, container: Document, key: str) -> Any:
    """A security setting as Kubernetes resolves it: the container's over the pod's."""
    return container.get("securityContext", {}).get(key, spec.get("securityContext", {}).get(key))


def test_every_container_is_non_root_and_unprivileged(docs: list[Document]) -> None:
    for workload, spec in workloads(docs):
        for container in all_containers(spec):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container.get("securityContext", {})
            assert _effective(spec, container, "runAsNonRoot") is True, where
            assert (_effective(spec, container, "runAsUser") or 0) > 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert not context.get("privileged", False), where
            seccomp = _effective(spec, container, "seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", where
            assert spec.get("automountServiceAccountToken") is False, where


def test_every_container_has_requests_and_limits(docs: list[Document]) -> None:
    for workload, spec in workloads(docs):
        for container in all_containers(spec):
            resources = container.get("resources", {})
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert set(resources.get("requests", {})) >= CPU_AND_MEMORY, where
            assert set(resources.get("limits", {})) >= CPU_AND_MEMORY, where


def test_chat_containers_have_a_read_only_root_and_a_writable_tmp(docs: list[Document]) -> None:
    for workload, spec in workloads(docs):
        for container in spec["containers"]:
            if not str(container["image"]).split(":")[0].endswith("chat-platform"):
                continue
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            volume = next(v for v in spec["volumes"] if v["name"] == tmp["name"])
            assert "emptyDir" in volume, where
            data_dir = container_env(container, docs).get("CHAT_DATA_DIR") or ""
            assert data_dir.startswith("/tmp/"), where


def test_shutdown_fits_in_the_termination_grace_period(docs: list[Document]) -> None:
    for service, spec, container in service_containers(docs):
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep", service
        drain_seconds = int(command[1])
        assert drain_seconds >= 3, f"{service}: too short for endpoints to update"
        grace = int(container_env(container, docs)["CHAT_SHUTDOWN_GRACE_SECONDS"] or 0)
        assert grace > 0, service
        assert spec["terminationGracePeriodSeconds"] > drain_seconds + grace, service


def test_rollouts_never_drop_below_the_wanted_replicas(docs: list[Document]) -> None:
    for deployment in find(docs, "Deployment"):
        rolling = deployment["spec"]["strategy"]["rollingUpdate"]
        assert rolling["maxUnavailable"] == 0, deployment["metadata"]["name"]


def test_stateful_stores_keep_data_on_volumes(docs: list[Document]) -> None:
    data_paths = {"redis": "/data", "scylla": "/var/lib/scylla"}
    for name, path in data_paths.items():
        store = find(docs, "StatefulSet", name)[0]
        claims = {claim["metadata"]["name"] for claim in store["spec"]["volumeClaimTemplates"]}
        container = store["spec"]["template"]["spec"]["containers"][0]
        mounted = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == path}
        assert mounted and mounted <= claims, name


def test_redis_keeps_an_append_only_file_and_never_evicts(
    docs: list[Document], tmp_path: Path
) -> None:
    servers = [
        store
        for store in find(docs, "StatefulSet")
        if store["spec"]["template"]["spec"]["containers"][0]["name"] == "valkey"
    ]
    assert servers
    for store in servers:
        container = store["spec"]["template"]["spec"]["containers"][0]
        where = store["metadata"]["name"]
        if "args" in container:  # one Valkey, set up on its command line
            settings = {
                flag: flag_value(container, f"--{flag}")
                for flag in ("appendonly", "maxmemory-policy", "dir")
            }
        else:  # behind Sentinel: a start script writes the config file
            run = run_start_script(tmp_path / where, docs, where, f"{where}-0")
            settings = {
                name: run.directive(name)[0] for name in ("appendonly", "maxmemory-policy", "dir")
            }
        assert settings == {"appendonly": "yes", "maxmemory-policy": "noeviction", "dir": "/data"}
