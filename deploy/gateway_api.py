"""Checks for the Gateway API objects, which kubernetes-validate has no schema for.

The Gateway API kinds are custom resources: their schemas live in CRDs that the
cluster installs, not in the Kubernetes OpenAPI documents kubernetes-validate bundles.
These schemas cover the part of ``gateway.networking.k8s.io/v1`` the manifests use,
with the same field names, enums and patterns as the upstream CRDs, and reject any
field they do not know (like ``--strict`` does for built-in kinds). The reference
checks then make sure every route attaches to a Gateway listener of the render and
sends traffic to a Service port that exists.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from deploy.manifests import Document, find, services_by_name

API_VERSION = "gateway.networking.k8s.io/v1"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DURATION = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}


def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": _DNS_LABEL, "maxLength": 253}},
}

_OBJECT_REF = _strict(
    {
        "group": {"type": "string"},
        "kind": {"type": "string"},
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "namespace": {"type": "string", "pattern": _DNS_LABEL},
    },
    ("name",),
)

_LISTENER = _strict(
    {
        "name": {"type": "string", "pattern": _DNS_LABEL, "maxLength": 253},
        "hostname": {"type": "string", "pattern": _HOSTNAME},
        "port": _PORT,
        "protocol": {"enum": ["HTTP", "HTTPS", "TLS", "TCP", "UDP"]},
        "tls": _strict(
            {
                "mode": {"enum": ["Terminate", "Passthrough"]},
                "certificateRefs": {"type": "array", "items": _OBJECT_REF, "maxItems": 64},
                "options": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
        "allowedRoutes": _strict(
            {
                "namespaces": _strict(
                    {
                        "from": {"enum": ["All", "Selector", "Same"]},
                        "selector": {"type": "object"},
                    }
                ),
                "kinds": {
                    "type": "array",
                    "items": _strict(
                        {"group": {"type": "string"}, "kind": {"type": "string"}}, ("kind",)
                    ),
                },
            }
        ),
    },
    ("name", "port", "protocol"),
)

GATEWAY_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": _METADATA,
        "spec": _strict(
            {
                "gatewayClassName": {"type": "string", "minLength": 1, "maxLength": 253},
                "listeners": {
                    "type": "array",
                    "items": _LISTENER,
                    "minItems": 1,
                    "maxItems": 64,
                },
            },
            ("gatewayClassName", "listeners"),
        ),
    },
}

_PATH_MATCH = _strict(
    {
        "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
        "value": {"type": "string", "pattern": "^/", "maxLength": 1024},
    }
)

_REDIRECT = _strict(
    {
        "scheme": {"enum": ["http", "https"]},
        "hostname": {"type": "string", "pattern": _HOSTNAME},
        "port": _PORT,
        "statusCode": {"enum": [301, 302, 303, 307, 308]},
    }
)

_RULE = _strict(
    {
        "name": {"type": "string", "pattern": _DNS_LABEL},
        "matches": {
            "type": "array",
            "maxItems": 64,
            "items": _strict({"path": _PATH_MATCH, "method": {"type": "string"}}),
        },
        "filters": {
            "type": "array",
            "maxItems": 16,
            "items": _strict(
                {"type": {"enum": ["RequestRedirect"]}, "requestRedirect": _REDIRECT},
                ("type",),
            ),
        },
        "backendRefs": {
            "type": "array",
            "maxItems": 16,
            "items": _strict(
                {
                    "group": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string", "minLength": 1},
                    "namespace": {"type": "string"},
                    "port": _PORT,
                    "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
                },
                ("name",),
            ),
        },
        "timeouts": _strict(
            {
                "request": {"type": "string", "pattern": _DURATION},
                "backendRequest": {"type": "string", "pattern": _DURATION},
            }
        ),
    }
)

HTTPROUTE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": _METADATA,
        "spec": _strict(
            {
                "parentRefs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "items": _strict(
                        {
                            "group": {"type": "string"},
                            "kind": {"type": "string"},
                            "namespace": {"type": "string"},
                            "name": {"type": "string", "minLength": 1},
                            "sectionName": {"type": "string", "pattern": _DNS_LABEL},
                            "port": _PORT,
                        },
                        ("name",),
                    ),
                },
                "hostnames": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {"type": "string", "pattern": _HOSTNAME},
                },
                "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": _RULE},
            },
            ("parentRefs", "rules"),
        ),
    },
}


def _schema_problems(doc: Document, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in validator.iter_errors(doc):
        where = ".".join(str(part) for part in error.absolute_path) or "(top)"
        problems.append(f"{where}: {error.message}")
    return problems


def check_gateway(doc: Document, docs: list[Document]) -> list[str]:
    problems = _schema_problems(doc, GATEWAY_SCHEMA)
    if problems:
        return problems
    names = [listener["name"] for listener in doc["spec"]["listeners"]]
    if len(set(names)) != len(names):
        problems.append(f"listener names repeat: {names}")
    for listener in doc["spec"]["listeners"]:
        if listener["protocol"] == "HTTPS" and not listener.get("tls", {}).get("certificateRefs"):
            problems.append(f"HTTPS listener {listener['name']} has no certificateRefs")
    return problems


def check_httproute(doc: Document, docs: list[Document]) -> list[str]:
    problems = _schema_problems(doc, HTTPROUTE_SCHEMA)
    if problems:
        return problems
    spec = doc["spec"]
    namespace = doc["metadata"].get("namespace")
    gateways = {gw["metadata"]["name"]: gw for gw in find(docs, "Gateway")}
    for parent in spec["parentRefs"]:
        if (
            parent.get("kind", "Gateway") != "Gateway"
            or parent.get("namespace", namespace) != namespace
        ):
            continue  # a Gateway owned by someone else: not part of this render
        gateway = gateways.get(parent["name"])
        if gateway is None:
            problems.append(f"parentRef {parent['name']}: no such Gateway in the render")
            continue
        listeners = {item["name"] for item in gateway["spec"]["listeners"]}
        section = parent.get("sectionName")
        if section is not None and section not in listeners:
            problems.append(f"parentRef {parent['name']}: no listener named {section}")

    services = services_by_name(docs)
    seen_paths: set[tuple[str, str]] = set()
    for index, rule in enumerate(spec["rules"]):
        redirects = [f for f in rule.get("filters", []) if f["type"] == "RequestRedirect"]
        if redirects and rule.get("backendRefs"):
            problems.append(f"rules.{index}: a redirect rule cannot also have backendRefs")
        if not redirects and not rule.get("backendRefs"):
            problems.append(f"rules.{index}: neither backendRefs nor a redirect")
        for match in rule.get("matches", []):
            path = match.get("path", {"type": "PathPrefix", "value": "/"})
            key = (path["type"], path["value"])
            if key in seen_paths:
                problems.append(f"rules.{index}: path {key} is matched by an earlier rule")
            seen_paths.add(key)
        for ref in rule.get("backendRefs", []):
            if ref.get("kind", "Service") != "Service":
                problems.append(f"rules.{index}: backend {ref['name']} is not a Service")
                continue
            service = services.get(ref["name"])
            if service is None:
                problems.append(f"rules.{index}: no Service named {ref['name']}")
                continue
            ports = {port["port"] for port in service["spec"].get("ports", [])}
            if ref.get("port") not in ports:
                problems.append(
                    f"rules.{index}: Service {ref['name']} has no port {ref.get('port')}"
                )
    return problems


# (apiVersion, kind) of every custom resource the checker knows, with its check.
CUSTOM_RESOURCE_CHECKS = {
    (API_VERSION, "Gateway"): check_gateway,
    (API_VERSION, "HTTPRoute"): check_httproute,
}
