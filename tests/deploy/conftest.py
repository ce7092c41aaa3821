"""Every overlay of deploy/k8s rendered once for the whole run.

Rendering needs kubectl (or kustomize) on PATH. Without it these tests fail with that
reason instead of skipping: a deployment that is never rendered is never checked.
"""

from __future__ import annotations

import pytest

from deploy.manifests import OVERLAYS, Document, RenderError, render_all


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Document]]:
    try:
        return render_all()
    except RenderError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Document]]) -> str:
    return str(request.param)


@pytest.fixture
def docs(overlay: str, rendered: dict[str, list[Document]]) -> list[Document]:
    return rendered[overlay]
