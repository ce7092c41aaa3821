"""Settings come from CHAT_ variables; lists take JSON or commas."""

from __future__ import annotations

import pytest

from chat_gateway.settings import GatewaySettings
from chat_shared.settings import ChatSettings


@pytest.mark.parametrize(
    "raw",
    ['["a.example:9042","b.example"]', "a.example:9042,b.example", " a.example:9042 , b.example "],
)
def test_lists_accept_json_or_commas(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CHAT_CASSANDRA_HOSTS", raw)
    assert ChatSettings().cassandra_hosts == ["a.example:9042", "b.example"]


def test_service_settings_extend_the_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_ALLOWED_ORIGINS", "https://chat.example")
    monkeypatch.setenv("CHAT_INGEST_SHARDS", "8")
    settings = GatewaySettings()
    assert settings.allowed_origins == ["https://chat.example"]
    assert settings.ingest_shards == 8
    assert settings.service_name == "gateway"


def test_secrets_directory_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / "CHAT_CASSANDRA_PASSWORD").write_text("s3cret")
    monkeypatch.setenv("CHAT_SECRETS_DIR", str(folder))
    assert ChatSettings().cassandra_password == "s3cret"
