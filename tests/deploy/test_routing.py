"""Public routing: every path prefix of the contract reaches the service that owns it,
through the Gateway API route and through the Ingress variant alike."""

from __future__ import annotations

import pytest

from deploy.manifests import (
    Document,
    find,
    pod_labels,
    selects,
    served_service,
    services_by_name,
    workloads,
)

# The path prefixes of the public contract and the service that owns each.
CONTRACT_PREFIXES = {
    "/v1/ws": "gateway",
    "/v1/presence": "gateway",
    "/": "gateway",
    "/v1/auth": "auth",
    "/v1/users": "auth",
    "/.well-known/jwks.json": "auth",
    "/v1/conversations": "history",
}
# Served by the gateway under "/" anyway, listed so the route documents it.
EXTRA_PATHS = {"/asyncapi.json": "gateway"}

# Requests a client really makes, and who must answer them.
SAMPLE_REQUESTS = {
    "/v1/ws": "gateway",
    "/v1/presence": "gateway",
    "/asyncapi.json": "gateway",
    "/": "gateway",
    "/docs": "gateway",
    "/v1/auth/login": "auth",
    "/v1/users/me": "auth",
    "/.well-known/jwks.json": "auth",
    "/v1/conversations": "history",
    "/v1/conversations/c1/messages": "history",
    "/v1/usersettings": "gateway",  # a prefix matches whole path segments only
}

Route = tuple[str, str, str]  # (match type, path, service)


def owner_of_service(name: str, docs: list[Document]) -> str:
    service = services_by_name(docs)[name]
    owners = {
        served_service(container)
        for workload, spec in workloads(docs)
        if selects(service["spec"]["selector"], pod_labels(workload))
        for container in spec["containers"]
    }
    assert len(owners) == 1, f"Service {name} reaches {owners}"
    return str(owners.pop())


def httproute_routes(docs: list[Document]) -> list[Route]:
    (route,) = find(docs, "HTTPRoute", "chat")
    found = []
    for rule in route["spec"]["rules"]:
        (backend,) = rule["backendRefs"]
        for match in rule["matches"]:
            kind = {"PathPrefix": "prefix", "Exact": "exact"}[match["path"]["type"]]
            found.append((kind, match["path"]["value"], owner_of_service(backend["name"], docs)))
    return found


def ingress_routes(docs: list[Document]) -> list[Route]:
    (ingress,) = find(docs, "Ingress", "chat")
    found = []
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            kind = {"Prefix": "prefix", "Exact": "exact"}[path["pathType"]]
            service = path["backend"]["service"]["name"]
            found.append((kind, path["path"], owner_of_service(service, docs)))
    return found


def routes_of(docs: list[Document]) -> list[Route]:
    return ingress_routes(docs) if find(docs, "Ingress") else httproute_routes(docs)


def resolve(routes: list[Route], path: str) -> str:
    """The service a request path reaches: an exact match first, then the longest
    prefix that matches whole path segments (both Gateway API and Ingress rules)."""
    for kind, value, service in routes:
        if kind == "exact" and value == path:
            return service
    best = None
    for kind, value, service in routes:
        prefix = value.rstrip("/")
        if (
            kind == "prefix"
            and (path == prefix or path.startswith(prefix + "/"))
            and (best is None or len(value) > len(best[0]))
        ):
            best = (value, service)
    assert best is not None, f"nothing routes {path}"
    return best[1]


def test_each_overlay_has_exactly_one_kind_of_entry(overlay: str, docs: list[Document]) -> None:
    has_ingress = bool(find(docs, "Ingress"))
    has_route = bool(find(docs, "HTTPRoute", "chat"))
    assert has_ingress != has_route
    assert has_ingress == (overlay == "ingress")


def test_routes_are_exactly_the_contract_prefixes(docs: list[Document]) -> None:
    routed = {path: service for _, path, service in routes_of(docs)}
    assert routed == {**CONTRACT_PREFIXES, **EXTRA_PATHS}


@pytest.mark.parametrize(("path", "owner"), sorted(SAMPLE_REQUESTS.items()))
def test_requests_reach_their_owner(
    rendered: dict[str, list[Document]], path: str, owner: str
) -> None:
    for overlay, docs in rendered.items():
        assert resolve(routes_of(docs), path) == owner, overlay


def test_websocket_route_has_no_request_timeout(rendered: dict[str, list[Document]]) -> None:
    checked = []
    for overlay, docs in rendered.items():
        for route in find(docs, "HTTPRoute", "chat"):
            (ws_rule,) = [
                rule
                for rule in route["spec"]["rules"]
                if any(m["path"]["value"] == "/v1/ws" for m in rule["matches"])
            ]
            assert ws_rule["timeouts"]["request"] == "0s", overlay  # zero: no timeout
            checked.append(overlay)
    assert checked == ["dev", "production"]


def test_ingress_keeps_idle_websockets_open(rendered: dict[str, list[Document]]) -> None:
    (ingress,) = find(rendered["ingress"], "Ingress")
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    assert ingress["spec"]["ingressClassName"] == "nginx"


def test_production_serves_the_api_over_https_only(rendered: dict[str, list[Document]]) -> None:
    docs = rendered["production"]
    (gateway,) = find(docs, "Gateway")
    listeners = {item["name"]: item for item in gateway["spec"]["listeners"]}
    assert listeners["https"]["protocol"] == "HTTPS"
    (route,) = find(docs, "HTTPRoute", "chat")
    assert [ref.get("sectionName") for ref in route["spec"]["parentRefs"]] == ["https"]
    (redirect,) = find(docs, "HTTPRoute", "chat-https-redirect")
    assert [ref.get("sectionName") for ref in redirect["spec"]["parentRefs"]] == ["http"]
    (rule,) = redirect["spec"]["rules"]
    assert rule["filters"][0]["requestRedirect"]["scheme"] == "https"
