"""The auth service as `make run` runs it: a real uvicorn process on the embedded
stack (Valkey with AOF, SQLite, generated key), stopped with SIGTERM and restarted."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx2
import pytest

from chat_shared.devstack import Stack
from tests.support.ports import free_port

PASSWORD = "correct horse battery"


def start_stack(data_dir: Path, auth_port: int) -> Stack:
    ports = {"auth": auth_port, "history": free_port(), "gateway": free_port()}
    return Stack(data_dir=data_dir, ports=ports).start(["auth"])


@pytest.mark.slow
def test_auth_process_serves_and_keeps_accounts_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack = start_stack(data_dir, port)
    try:
        with httpx2.Client(base_url=base, timeout=10.0) as http:
            signup = http.post(
                "/v1/auth/signup",
                json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
            )
            assert signup.status_code == 201, signup.text
            login = http.post("/v1/auth/login", json={"login": "alice", "password": PASSWORD})
            assert login.status_code == 200, login.text
            access = login.json()["access_token"]
            assert http.get("/healthz").json() == {"status": "ok"}
            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"redis": "ok", "store": "ok"}
            metrics = http.get("/metrics")
            assert metrics.status_code == 200
            assert "chat_http_requests_total" in metrics.text
            assert 'chat_auth_logins_total{outcome="ok"} 1.0' in metrics.text
            kid = http.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
        auth = stack.services["auth"]
    finally:
        stack.stop()
    # SIGTERM is a graceful stop: the lifespan closed its store and Redis (uvicorn
    # then re-raises the signal, hence the exit status).
    assert auth.process is not None
    assert auth.process.returncode in (0, -signal.SIGTERM)
    assert auth.log_path is not None
    assert "Application shutdown complete." in auth.log_path.read_text()

    stack = start_stack(data_dir, port)
    try:
        with httpx2.Client(base_url=base, timeout=10.0) as http:
            # Same key from disk: tokens signed before the restart still verify.
            assert http.get("/.well-known/jwks.json").json()["keys"][0]["kid"] == kid
            me = http.get("/v1/users/me", headers={"Authorization": f"Bearer {access}"})
            assert me.status_code == 200
            assert me.json()["id"] == signup.json()["id"]
            again = http.post("/v1/auth/login", json={"login": "alice", "password": PASSWORD})
            assert again.status_code == 200
    finally:
        stack.stop()
