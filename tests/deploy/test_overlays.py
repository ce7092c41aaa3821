"""What distinguishes the overlays: a one-node dev system, a redundant production one."""

from __future__ import annotations

import ast

from deploy.manifests import Document, container_env, find, pod_labels, selects

SERVICE_DEPLOYMENTS = ("gateway", "auth", "history")


def common_env(docs: list[Document]) -> dict[str, str | None]:
    (gateway,) = find(docs, "Deployment", "gateway")
    return container_env(gateway["spec"]["template"]["spec"]["containers"][0], docs)


def replication(docs: list[Document]) -> dict[str, object]:
    value = str(common_env(docs)["CHAT_CASSANDRA_REPLICATION"])
    parsed: dict[str, object] = ast.literal_eval(value)  # a CQL map is a Python dict literal
    return parsed


def scylla_env(docs: list[Document]) -> dict[str, str]:
    (scylla,) = find(docs, "StatefulSet", "scylla")
    container = scylla["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container["env"]}


def test_dev_runs_one_of_everything(rendered: dict[str, list[Document]]) -> None:
    docs = rendered["dev"]
    for kind in ("Deployment", "StatefulSet"):
        for workload in find(docs, kind):
            assert workload["spec"]["replicas"] == 1, workload["metadata"]["name"]
    assert not find(docs, "HorizontalPodAutoscaler")
    assert not find(docs, "PodDisruptionBudget")
    assert replication(docs)["class"] == "NetworkTopologyStrategy"


def test_keyspace_replication_matches_the_scylla_nodes(
    rendered: dict[str, list[Document]],
) -> None:
    for overlay, docs in rendered.items():
        env = common_env(docs)
        (scylla,) = find(docs, "StatefulSet", "scylla")
        nodes = scylla["spec"]["replicas"]
        dc = env["CHAT_CASSANDRA_LOCAL_DC"]
        assert replication(docs) == {"class": "NetworkTopologyStrategy", dc: nodes}, overlay
        # SimpleSnitch puts every node in this data center.
        args = scylla["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--endpoint-snitch=SimpleSnitch" in args and dc == "datacenter1", overlay
        assert env["CHAT_CASSANDRA_CONSISTENCY"] == "LOCAL_QUORUM", overlay


def test_production_scylla_is_three_nodes_on_three_machines(
    rendered: dict[str, list[Document]],
) -> None:
    for overlay in ("production", "ingress"):
        (scylla,) = find(rendered[overlay], "StatefulSet", "scylla")
        assert scylla["spec"]["replicas"] == 3
        anti = scylla["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        env = scylla_env(rendered[overlay])
        resources = scylla["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"]  # Guaranteed QoS
        assert int(env["SCYLLA_SMP"]) <= int(resources["limits"]["cpu"])


def test_production_runs_redundant_services(rendered: dict[str, list[Document]]) -> None:
    docs = rendered["production"]
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in find(docs, "Deployment")}
    assert replicas["gateway"] >= 3
    assert replicas["auth"] >= 2 and replicas["history"] >= 2


def test_gateway_scales_on_cpu_and_open_connections(rendered: dict[str, list[Document]]) -> None:
    (hpa,) = find(rendered["production"], "HorizontalPodAutoscaler", "gateway")
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gateway",
    }
    assert spec["minReplicas"] >= 3 and spec["maxReplicas"] > spec["minReplicas"]
    metrics = {m["type"]: m for m in spec["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "chat_gateway_connections"
    # Each scale-down closes sockets: it must be slower than a scale-up.
    down = spec["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert all(policy["value"] == 1 for policy in down["policies"])


def test_the_connections_metric_is_one_the_gateway_exports() -> None:
    from chat_gateway.metrics import GatewayMetrics
    from chat_shared.web.observability import ServiceMetrics

    base = ServiceMetrics("gateway")
    GatewayMetrics(base)
    names = {metric.name for metric in base.registry.collect()}
    assert "chat_gateway_connections" in names


def test_disruption_budgets_cover_every_replicated_workload(
    rendered: dict[str, list[Document]],
) -> None:
    docs = rendered["production"]
    budgets = find(docs, "PodDisruptionBudget")
    for name in (*SERVICE_DEPLOYMENTS, "scylla", "redis", "redis-sentinel"):
        workload = find(docs, "Deployment", name) or find(docs, "StatefulSet", name)
        labels = pod_labels(workload[0])
        covering = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, name
        budget = covering[0]["spec"]
        assert budget.get("maxUnavailable") == 1 or budget.get("minAvailable", 0) >= 1, name


def test_production_redis_fails_over_without_an_operator(
    rendered: dict[str, list[Document]],
) -> None:
    # The manual, traffic-less replica and its hand promotion are gone: three servers
    # behind three Sentinels (tests/deploy/test_redis_sentinel.py has the details).
    for overlay in ("production", "ingress"):
        docs = rendered[overlay]
        assert not find(docs, "StatefulSet", "redis-replica"), overlay
        (servers,) = find(docs, "StatefulSet", "redis")
        (sentinels,) = find(docs, "StatefulSet", "redis-sentinel")
        assert servers["spec"]["replicas"] == sentinels["spec"]["replicas"] == 3, overlay
        assert servers["spec"]["volumeClaimTemplates"], "each server keeps its own copy"
        env = common_env(docs)
        assert env["CHAT_REDIS_MODE"] == "sentinel", overlay
        assert env["CHAT_REDIS_MIN_REPLICAS"] == "1", overlay
