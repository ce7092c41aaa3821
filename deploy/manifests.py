"""Render the kustomize overlays and find things in the rendered documents.

Rendering shells out to ``kubectl kustomize`` (or a standalone ``kustomize build``),
the same code path ``kubectl apply -k`` takes, so what is checked is what a cluster
would receive.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "production", "ingress")
NAMESPACE = "chat"

Document = dict[str, Any]

# Kinds whose pod template this module knows how to reach.
_POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class RenderError(RuntimeError):
    """The manifests could not be rendered (no renderer, or kustomize refused them)."""


def kustomize_command(target: Path) -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize", str(target)]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build", str(target)]
    raise RenderError(
        "kubectl was not found on PATH (nor a standalone kustomize). Install kubectl, "
        "which bundles kustomize: the manifests cannot be rendered or checked without it."
    )


def render_text(target: Path) -> str:
    command = kustomize_command(target)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RenderError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
    return result.stdout


def load_documents(text: str) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_overlay(name: str) -> list[Document]:
    return load_documents(render_text(K8S_DIR / "overlays" / name))


def render_all() -> dict[str, list[Document]]:
    return {name: render_overlay(name) for name in OVERLAYS}


def label(doc: Document, key: str) -> str | None:
    value = doc.get("metadata", {}).get("labels", {}).get(key)
    return None if value is None else str(value)


def find(docs: list[Document], kind: str, name: str | None = None) -> list[Document]:
    return [
        doc
        for doc in docs
        if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(docs: list[Document], kind: str, name: str) -> Document:
    found = find(docs, kind, name)
    if len(found) != 1:
        raise LookupError(f"expected one {kind}/{name}, found {len(found)}")
    return found[0]


def pod_spec(doc: Document) -> Document | None:
    path = _POD_TEMPLATE_PATHS.get(doc.get("kind", ""))
    if path is None:
        return None
    node: Any = doc
    for key in path:
        node = node[key]
    return dict(node)


def pod_labels(doc: Document) -> dict[str, str]:
    path = (*_POD_TEMPLATE_PATHS[doc["kind"]][:-1], "metadata")
    node: Any = doc
    for key in path:
        node = node[key]
    return {k: str(v) for k, v in node.get("labels", {}).items()}


def workloads(docs: list[Document]) -> Iterator[tuple[Document, Document]]:
    """Every (workload, pod spec) pair of the render."""
    for doc in docs:
        spec = pod_spec(doc)
        if spec is not None:
            yield doc, spec


def all_containers(spec: Document) -> list[Document]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def container_env(container: Document, docs: list[Document]) -> dict[str, str | None]:
    """The environment a container starts with: ConfigMaps of ``envFrom`` first, then
    ``env`` on top (as Kubernetes does). Values that come from the downward API or a
    Secret are known only in the cluster and map to None."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is None:
            raise ValueError(f"envFrom other than a ConfigMap in {container['name']}")
        config_map = one(docs, "ConfigMap", ref["name"])
        prefix = source.get("prefix", "")
        env.update({prefix + k: str(v) for k, v in config_map.get("data", {}).items()})
    for item in container.get("env", []):
        env[item["name"]] = str(item["value"]) if "value" in item else None
    return env


def services_by_name(docs: list[Document]) -> dict[str, Document]:
    return {doc["metadata"]["name"]: doc for doc in find(docs, "Service")}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def selector_matches(selector: Document, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against labels."""
    if not selects(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values", []))
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def served_service(container: Document) -> str | None:
    """Which chat service a container runs through ``python -m chat_shared.serve``."""
    command = [*container.get("command", []), *container.get("args", [])]
    if command[:3] != ["python", "-m", "chat_shared.serve"] or len(command) < 4:
        return None
    return str(command[3])


def flag_value(container: Document, flag: str) -> str | None:
    args = [str(arg) for arg in container.get("args", [])]
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def mounted_file(spec: Document, container: Document, path: str) -> tuple[Document, str] | None:
    """The volume a container sees ``path`` in, and the file's path inside that volume
    (None when no mount of the container covers ``path``). The deepest mount wins."""
    best: tuple[Document, str] | None = None
    depth = -1
    for mount in container.get("volumeMounts", []):
        root = str(mount["mountPath"]).rstrip("/")
        if path.startswith(root + "/") and root.count("/") > depth:
            volume = next(v for v in spec.get("volumes", []) if v["name"] == mount["name"])
            best, depth = (volume, path[len(root) + 1 :]), root.count("/")
    return best


def projected_keys(volume: Document) -> dict[str, str] | None:
    """File name -> key of a Secret or ConfigMap volume that lists its ``items``; None
    when every key of the source is projected under its own name."""
    source = volume.get("secret") or volume.get("configMap") or {}
    items = source.get("items")
    if items is None:
        return None
    return {str(item["path"]): str(item["key"]) for item in items}


def config_map_file(docs: list[Document], spec: Document, container: Document, path: str) -> str:
    """The text of ``path`` as the container sees it, when a ConfigMap volume holds it."""
    found = mounted_file(spec, container, path)
    if found is None or "configMap" not in found[0]:
        raise LookupError(f"{container['name']}: no ConfigMap is mounted at {path}")
    volume, name = found
    keys = projected_keys(volume)
    key = name if keys is None else keys[name]
    return str(one(docs, "ConfigMap", volume["configMap"]["name"])["data"][key])
