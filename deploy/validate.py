"""Validate one rendered overlay: schemas first, then the references between objects.

Built-in kinds are checked by kubernetes-validate in strict mode (unknown fields are
errors) against one pinned Kubernetes version. Custom resources are checked by
:mod:`deploy.gateway_api`; any other kind without a bundled schema is an error, never
a silent skip. Schemas cannot see that a Service selects no pod or that an HPA targets
a Deployment that is not there, so those references are checked here as well.
"""

from __future__ import annotations

import functools
from typing import Any

import kubernetes_validate
from kubernetes_validate import utils as kubernetes_validate_utils

from deploy.gateway_api import CUSTOM_RESOURCE_CHECKS
from deploy.manifests import (
    NAMESPACE,
    Document,
    all_containers,
    find,
    pod_labels,
    selects,
    services_by_name,
    workloads,
)

# The oldest Kubernetes minor the manifests promise to work on.
KUBERNETES_VERSION = "1.33"

# kubernetes-validate reads and parses its schema files again for every object, the
# large shared definitions file included. Parsing each file once makes an overlay
# validate several times faster; the parsed schemas are only ever read.
if not hasattr(kubernetes_validate_utils.schema_contents, "cache_info"):
    kubernetes_validate_utils.schema_contents = functools.cache(
        kubernetes_validate_utils.schema_contents
    )

CLUSTER_SCOPED_KINDS = {"Namespace", "GatewayClass", "ClusterRole", "ClusterRoleBinding"}

# Secrets that are created in the cluster by hand or by cert-manager, never committed:
# the manifests may refer to them although no render contains them.
EXTERNAL_SECRETS = {"chat-signing-keys", "chat-tls", "chat-redis-auth", "chat-redis-tls"}


def _describe(doc: Document) -> str:
    return f"{doc.get('kind', '?')}/{doc.get('metadata', {}).get('name', '?')}"


def schema_problems(doc: Document) -> list[str]:
    check = CUSTOM_RESOURCE_CHECKS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if check is not None:
        return []  # custom resources are checked with the references, below
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path) or "(top)"
        return [f"{where}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [
            f"no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes "
            f"{KUBERNETES_VERSION} and no custom check for it"
        ]
    return []


def _identity_problems(docs: list[Document]) -> list[str]:
    problems = []
    seen: set[tuple[str, str, str]] = set()
    for doc in docs:
        metadata = doc.get("metadata", {})
        key = (doc.get("kind", ""), metadata.get("namespace", ""), metadata.get("name", ""))
        if key in seen:
            problems.append(f"{_describe(doc)}: defined twice")
        seen.add(key)
        if doc.get("kind") not in CLUSTER_SCOPED_KINDS and metadata.get("namespace") != NAMESPACE:
            problems.append(f"{_describe(doc)}: namespace is {metadata.get('namespace')!r}")
        if doc.get("kind") == "Secret" and metadata.get("name") in EXTERNAL_SECRETS:
            problems.append(f"{_describe(doc)}: this Secret must never be in the manifests")
    return problems


def _pod_reference_problems(docs: list[Document]) -> list[str]:
    problems = []
    config_maps = {doc["metadata"]["name"] for doc in find(docs, "ConfigMap")}
    secrets = {doc["metadata"]["name"] for doc in find(docs, "Secret")} | EXTERNAL_SECRETS
    for workload, spec in workloads(docs):
        where = _describe(workload)
        for volume in spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
                problems.append(f"{where}: volume {volume['name']} names a missing ConfigMap")
            if "secret" in volume and volume["secret"]["secretName"] not in secrets:
                problems.append(f"{where}: volume {volume['name']} names an unknown Secret")
        for container in all_containers(spec):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref is not None and ref not in config_maps:
                    problems.append(f"{where}: envFrom names a missing ConfigMap {ref}")
            for item in container.get("env", []):
                value_from = item.get("valueFrom", {})
                secret = value_from.get("secretKeyRef", {}).get("name")
                if secret is not None and secret not in secrets:
                    problems.append(f"{where}: env {item['name']} names an unknown Secret")
                config_map = value_from.get("configMapKeyRef", {}).get("name")
                if config_map is not None and config_map not in config_maps:
                    problems.append(f"{where}: env {item['name']} names a missing ConfigMap")
            mounts = {mount["name"] for mount in container.get("volumeMounts", [])}
            missing = (
                mounts
                - {volume["name"] for volume in spec.get("volumes", [])}
                - {
                    claim["metadata"]["name"]
                    for claim in workload.get("spec", {}).get("volumeClaimTemplates", [])
                }
            )
            if missing:
                problems.append(f"{where}: mounts undefined volumes {sorted(missing)}")
    return problems


def _selector_problems(docs: list[Document]) -> list[str]:
    problems = []
    pods = [(workload, pod_labels(workload), spec) for workload, spec in workloads(docs)]
    for service in find(docs, "Service"):
        selector = service["spec"].get("selector", {})
        chosen = [(w, spec) for w, labels, spec in pods if selects(selector, labels)]
        if not chosen:
            problems.append(f"{_describe(service)}: its selector matches no pod")
            continue
        for port in service["spec"].get("ports", []):
            target: Any = port.get("targetPort", port["port"])
            for workload, spec in chosen:
                offered = {
                    value
                    for container in spec["containers"]
                    for item in container.get("ports", [])
                    for value in (item.get("name"), item["containerPort"])
                }
                if target not in offered:
                    problems.append(
                        f"{_describe(service)}: {_describe(workload)} has no port {target}"
                    )
    for budget in find(docs, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"].get("matchLabels", {})
        if not any(selects(selector, labels) for _, labels, _ in pods):
            problems.append(f"{_describe(budget)}: its selector matches no pod")
    for autoscaler in find(docs, "HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        if not find(docs, target["kind"], target["name"]):
            problems.append(f"{_describe(autoscaler)}: scales a missing {target['kind']}")
    return problems


def _ingress_problems(docs: list[Document]) -> list[str]:
    problems = []
    services = services_by_name(docs)
    for ingress in find(docs, "Ingress"):
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                ports = {p["port"] for p in service["spec"]["ports"]} if service else set()
                if backend["port"].get("number") not in ports:
                    problems.append(
                        f"{_describe(ingress)}: {path['path']} goes to "
                        f"{backend['name']}:{backend['port']}, which no Service offers"
                    )
    return problems


def validate_documents(docs: list[Document]) -> list[str]:
    """Every problem of one rendered overlay, each prefixed with its object."""
    problems = []
    for doc in docs:
        problems += [f"{_describe(doc)}: {p}" for p in schema_problems(doc)]
        check = CUSTOM_RESOURCE_CHECKS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
        if check is not None:
            problems += [f"{_describe(doc)}: {p}" for p in check(doc, docs)]
    problems += _identity_problems(docs)
    problems += _pod_reference_problems(docs)
    problems += _selector_problems(docs)
    problems += _ingress_problems(docs)
    return problems
