"""The container image, read from the Dockerfile (no image can be built here), and its
agreement with the manifests that run it."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field

import pytest

from deploy.manifests import REPO_ROOT, Document, all_containers, workloads

DOCKERFILE = REPO_ROOT / "Dockerfile"
WORKSPACE_PACKAGES = [
    "./shared",
    "./services/auth",
    "./services/history",
    "./services/chat-gateway",
]
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|gcc|g\+\+|build-essential|make|uv|pip)\b")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base=base, name=name))
        elif not stages and keyword == "ARG":
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile()[1]


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def image_uid(runtime: Stage) -> int:
    (user,) = runtime.all("USER")
    uid, _, _ = user.partition(":")
    assert uid.isdigit(), "Kubernetes can only verify runAsNonRoot for a numeric user"
    return int(uid)


def test_both_stages_start_from_the_same_slim_python(stages: list[Stage]) -> None:
    global_args, _ = parse_dockerfile()
    assert [stage.base for stage in stages] == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert global_args["PYTHON_IMAGE"].startswith("python:3.11-slim")


def test_dependencies_come_from_the_hash_pinned_runtime_lock(stages: list[Stage]) -> None:
    runs = " ".join(stages[0].all("RUN"))
    assert "--require-hashes" in runs and "-r requirements-runtime.lock" in runs
    assert "--no-build" in runs  # wheels only: no compiler is ever needed
    install = next(r for r in stages[0].all("RUN") if "--no-deps" in r)
    assert [arg for arg in shlex.split(install) if arg.startswith("./")] == WORKSPACE_PACKAGES


def test_runtime_stage_has_no_build_tools(runtime: Stage) -> None:
    for run in runtime.all("RUN"):
        assert not BUILD_TOOLS.search(run), run
    copies = runtime.all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_image_runs_as_the_user_the_pods_demand(
    runtime: Stage, rendered: dict[str, list[Document]]
) -> None:
    uid = image_uid(runtime)
    assert uid >= 10000  # clear of system users and of the stores' 999
    for overlay, docs in rendered.items():
        for _, spec in workloads(docs):
            for container in all_containers(spec):
                if "chat-platform" in container["image"]:
                    assert spec["securityContext"]["runAsUser"] == uid, overlay
                    assert spec["securityContext"]["runAsGroup"] == uid, overlay


def test_image_carries_the_oci_labels(runtime: Stage) -> None:
    labels = " ".join(runtime.all("LABEL"))
    for key, arg in (("source", "SOURCE_URL"), ("version", "VERSION")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
        assert any(a.startswith(arg) for a in runtime.all("ARG"))
    for key in ("title", "description"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_default_command_and_manifest_commands_exist_in_the_image(
    runtime: Stage, rendered: dict[str, list[Document]]
) -> None:
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert entrypoint == '["python", "-m", "chat_shared.serve"]'
    scripts = tomllib.loads((REPO_ROOT / "shared" / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    for docs in rendered.values():
        for _, spec in workloads(docs):
            for container in spec["containers"]:
                if "chat-platform" not in container["image"]:
                    continue
                command = container["command"]
                assert command in (["python", "-m", "chat_shared.serve"], ["chat-migrate"])
                if command == ["chat-migrate"]:
                    assert scripts["chat-migrate"] == "chat_shared.store.migrate:main"


def test_build_context_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    included = {line[1:] for line in lines if line.startswith("!")}
    assert included == {"requirements-runtime.lock", "shared", "services"}
