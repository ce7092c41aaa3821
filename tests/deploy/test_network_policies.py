"""NetworkPolicies, evaluated the way the cluster does: a connection passes only if an
egress policy of the source and an ingress policy of the destination both allow it
(every pod here is selected by the default-deny policy, so none is unrestricted)."""

from __future__ import annotations

import pytest

from deploy.manifests import NAMESPACE, Document, find, pod_labels, selector_matches, workloads

COMPONENT = "app.kubernetes.io/component"
NAMESPACE_LABELS = {"kubernetes.io/metadata.name": NAMESPACE}
EDGE_NAMESPACE = {"kubernetes.io/metadata.name": "edge-proxies", "chat-edge": "true"}
NGINX_NAMESPACE = {"kubernetes.io/metadata.name": "ingress-nginx"}
STRANGER_NAMESPACE = {"kubernetes.io/metadata.name": "someone-else"}
ANY_POD = {"app": "proxy"}

SERVICES = ("gateway", "auth", "history")
SENTINEL = "redis-sentinel"
# Connections the system cannot work without: (from, to, port).
REQUIRED = [
    ("gateway", "auth", 8001),
    ("gateway", "history", 8002),
    ("history", "auth", 8001),
    *[(service, "redis", 6379) for service in SERVICES],
    *[(service, "scylla", 9042) for service in (*SERVICES, "migrate")],
    ("scylla", "scylla", 7000),
]
# Who may open a connection to each store port.
STORE_CLIENTS = {
    ("redis", 6379): {*SERVICES, "redis"},
    ("scylla", 9042): {*SERVICES, "migrate"},
    ("scylla", 19042): {*SERVICES, "migrate"},
    ("scylla", 7000): {"scylla"},
}
# Every path to or between Valkey pods, (from, to, port), with one server: the chat
# services, and the server itself (replication, were there a replica).
REDIS_PATHS = {*[(service, "redis", 6379) for service in SERVICES], ("redis", "redis", 6379)}
# With Sentinel: the services also ask the Sentinels; a starting server asks them whom
# to follow; the Sentinels watch and reconfigure the servers and talk to each other.
SENTINEL_PATHS = {
    *REDIS_PATHS,
    *[(service, SENTINEL, 26379) for service in SERVICES],
    ("redis", SENTINEL, 26379),
    (SENTINEL, "redis", 6379),
    (SENTINEL, SENTINEL, 26379),
}
REDIS_PORTS = (6379, 26379)


class Peer:
    def __init__(self, labels: dict[str, str], namespace_labels: dict[str, str]) -> None:
        self.labels = labels
        self.namespace_labels = namespace_labels

    @property
    def local(self) -> bool:
        return self.namespace_labels == NAMESPACE_LABELS


def _peer_matches(peer: Document, other: Peer) -> bool:
    if "ipBlock" in peer:
        return False  # no pod of this test is addressed by IP range
    namespace_ok = (
        selector_matches(peer["namespaceSelector"], other.namespace_labels)
        if "namespaceSelector" in peer
        else other.local
    )
    pods_ok = selector_matches(peer.get("podSelector", {}), other.labels)
    return namespace_ok and pods_ok


def _port_matches(rule: Document, port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        item.get("port") == port and item.get("protocol", "TCP") == protocol for item in ports
    )


def _side_allows(
    docs: list[Document], pod: Peer, other: Peer, port: int, protocol: str, direction: str
) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    governing = [
        policy
        for policy in find(docs, "NetworkPolicy")
        if direction in policy["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(policy["spec"]["podSelector"], pod.labels)
    ]
    if not governing:
        return True
    return any(
        _port_matches(rule, port, protocol)
        and (
            ("from" not in rule and "to" not in rule)
            or any(_peer_matches(peer, other) for peer in rule[peers_key])
        )
        for policy in governing
        for rule in policy["spec"].get(key, [])
    )


def allowed(
    docs: list[Document], source: Peer, target: Peer, port: int, protocol: str = "TCP"
) -> bool:
    egress_ok = not source.local or _side_allows(docs, source, target, port, protocol, "Egress")
    ingress_ok = not target.local or _side_allows(docs, target, source, port, protocol, "Ingress")
    return egress_ok and ingress_ok


def chat_pods(docs: list[Document]) -> dict[str, list[Peer]]:
    """The pods of each component, by their template labels."""
    pods: dict[str, list[Peer]] = {}
    for workload, _ in workloads(docs):
        labels = pod_labels(workload)
        pods.setdefault(labels[COMPONENT], []).append(Peer(labels, NAMESPACE_LABELS))
    return pods


def test_everything_is_denied_unless_allowed(docs: list[Document]) -> None:
    default = [
        policy
        for policy in find(docs, "NetworkPolicy")
        if policy["spec"]["podSelector"] == {}
        and not policy["spec"].get("ingress")
        and not policy["spec"].get("egress")
    ]
    assert len(default) == 1
    assert set(default[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def has_sentinels(docs: list[Document]) -> bool:
    return SENTINEL in chat_pods(docs)


def test_every_connection_the_system_needs_is_open(docs: list[Document]) -> None:
    pods = chat_pods(docs)
    required = [*REQUIRED, *(SENTINEL_PATHS if has_sentinels(docs) else [])]
    for source, target, port in required:
        for client in pods[source]:
            for server in pods[target]:
                assert allowed(docs, client, server, port), (source, target, port)


def store_clients(docs: list[Document]) -> dict[tuple[str, int], set[str]]:
    """Who may open a connection to each store port of this overlay."""
    clients = dict(STORE_CLIENTS)
    if has_sentinels(docs):
        clients[("redis", 6379)] = {*SERVICES, "redis", SENTINEL}
        clients[(SENTINEL, 26379)] = {*SERVICES, "redis", SENTINEL}
    return clients


@pytest.mark.parametrize(("store", "port"), [*sorted(STORE_CLIENTS), (SENTINEL, 26379)])
def test_only_chat_pods_reach_the_stores(docs: list[Document], store: str, port: int) -> None:
    pods = chat_pods(docs)
    expected = store_clients(docs).get((store, port))
    if expected is None:
        assert store not in pods, f"{store} runs here but the test expects nobody to reach it"
        return
    admitted = {
        component
        for component, clients in pods.items()
        for client in clients
        if all(allowed(docs, client, server, port) for server in pods[store])
    }
    assert admitted == expected
    for namespace in (EDGE_NAMESPACE, NGINX_NAMESPACE, STRANGER_NAMESPACE):
        outsider = Peer(ANY_POD, namespace)
        assert not any(allowed(docs, outsider, server, port) for server in pods[store])


def test_the_edge_reaches_the_service_ports_only(overlay: str, docs: list[Document]) -> None:
    pods = chat_pods(docs)
    edges = [Peer(ANY_POD, EDGE_NAMESPACE)]
    if overlay == "ingress":
        edges.append(Peer(ANY_POD, NGINX_NAMESPACE))
    else:
        assert not allowed(docs, Peer(ANY_POD, NGINX_NAMESPACE), pods["gateway"][0], 8000)
    public_ports = {"gateway": 8000, "auth": 8001, "history": 8002}
    for edge in edges:
        for component, servers in pods.items():
            for port in (8000, 8001, 8002, 6379, 26379, 9042, 7000):
                for server in servers:
                    expected = public_ports.get(component) == port
                    assert allowed(docs, edge, server, port) == expected, (component, port)
    stranger = Peer(ANY_POD, STRANGER_NAMESPACE)
    assert not allowed(docs, stranger, pods["gateway"][0], 8000)


def test_every_pod_can_resolve_names(docs: list[Document]) -> None:
    resolver = Peer({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"})
    for component, pods in chat_pods(docs).items():
        for pod in pods:
            for protocol in ("UDP", "TCP"):
                assert allowed(docs, pod, resolver, 53, protocol), (component, protocol)


def test_nothing_may_leave_for_arbitrary_addresses(docs: list[Document]) -> None:
    for policy in find(docs, "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            assert not any("ipBlock" in peer for peer in rule.get("to", []))
            if "to" not in rule:  # only name lookups may go anywhere
                assert {item["port"] for item in rule["ports"]} == {53}, policy["metadata"]


def test_valkey_paths_are_exactly_the_ones_its_topology_uses(
    overlay: str, docs: list[Document]
) -> None:
    """Every (from, to, port) the policies open on the Valkey ports, against the list:
    nothing the servers or Sentinels need is missing, and nothing else is open."""
    pods = chat_pods(docs)
    opened = {
        (source, target, port)
        for source, clients in pods.items()
        for target, servers in pods.items()
        for port in REDIS_PORTS
        if any(allowed(docs, client, server, port) for client in clients for server in servers)
    }
    expected = SENTINEL_PATHS if overlay in ("production", "ingress") else REDIS_PATHS
    assert opened == expected
    assert has_sentinels(docs) == (overlay in ("production", "ingress"))
