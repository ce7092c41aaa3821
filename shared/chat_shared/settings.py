"""One settings base for every service.

Every value is read from a ``CHAT_``-prefixed environment variable, a ``.env`` file, or a
file named after the setting in the secrets directory (``CHAT_SECRETS_DIR``, default
``/run/secrets/chat``; Kubernetes mounts Secrets there). Each service subclasses
:class:`ChatSettings` with its own fields; the README lists them all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from chat_shared.ingest import DEFAULT_MAX_MESSAGE_CHARS

DEFAULT_SECRETS_DIR = "/run/secrets/chat"


def _split_list(value: object) -> object:
    """Lists come as JSON (``["a","b"]``) or comma-separated (``a,b``)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


StrList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


class ChatSettings(BaseSettings):
    """Settings every service reads."""

    model_config = SettingsConfigDict(
        env_prefix="CHAT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    service_name: str = Field("chat", description="Name used in logs and metrics.")
    data_dir: Path = Field(
        Path(".data"),
        description="Folder for embedded state: Valkey AOF, SQLite files, generated keys.",
    )
    redis_url: str = Field(
        "",
        description=(
            "Redis/Valkey URL (redis://, rediss:// or unix://). Empty: `make run` starts an "
            "embedded Valkey with AOF under the data dir and hands its URL to the services."
        ),
    )
    embedded_redis_maxmemory: str = Field(
        "1gb",
        description="`make run`'s own Valkey servers: memory each may use before it refuses "
        "writes (noeviction); sends then get `unavailable` and nothing acknowledged is lost.",
    )
    redis_mode: Literal["single", "cluster", "sentinel"] = Field(
        "single",
        description=(
            "Redis topology: one server (`CHAT_REDIS_URL`), a Redis/Valkey Cluster "
            "(`CHAT_REDIS_NODES`) or a primary with replicas behind Sentinel "
            "(`CHAT_REDIS_SENTINELS`, `CHAT_REDIS_MASTER`)."
        ),
    )
    redis_nodes: StrList = Field(
        default_factory=list,
        description="Cluster mode: some nodes as host:port (comma separated); the rest are found.",
    )
    redis_sentinels: StrList = Field(
        default_factory=list, description="Sentinel mode: the Sentinels as host:port."
    )
    redis_master: str = Field("chat", description="Sentinel mode: the monitored primary's name.")
    redis_username: str | None = Field(
        None, description="Redis ACL user (every mode; in single mode a user in the URL wins)."
    )
    redis_password: SecretStr | None = Field(
        None,
        description="Redis password, also sent to the Sentinels (every mode; in single mode "
        "a password in the URL wins). In Kubernetes it comes from a Secret.",
    )
    redis_tls: bool = Field(
        False,
        description="TLS to the Redis nodes and Sentinels (cluster, sentinel; single mode "
        "uses a rediss:// URL).",
    )
    redis_tls_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the Redis servers' certificates, which "
        "are verified against it (host name included). Unset: the system's CAs.",
    )
    redis_min_replicas: int = Field(
        0,
        ge=0,
        description="Replicas that must confirm a message (WAIT) before its send is "
        "acknowledged, so it survives the loss of the primary. Single or sentinel mode.",
    )
    redis_wait_timeout_ms: int = Field(
        1000, ge=1, description="How long a send waits for those replicas before it fails."
    )
    store: Literal["sqlite", "cassandra"] = Field(
        "sqlite", description="Event store engine: embedded SQLite or Cassandra/ScyllaDB."
    )
    cassandra_hosts: StrList = Field(
        default_factory=list,
        description="Cassandra/ScyllaDB contact points (comma separated or a JSON list).",
    )
    cassandra_port: int = Field(9042, description="CQL native port.")
    cassandra_keyspace: str = Field("chat", description="Keyspace holding every table.")
    cassandra_local_dc: str | None = Field(
        None, description="Local datacenter for token-aware, DC-aware load balancing."
    )
    cassandra_consistency: str = Field(
        "LOCAL_QUORUM", description="Consistency level of reads and writes."
    )
    cassandra_replication: str = Field(
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        description="Replication map used when the migration creates the keyspace.",
    )
    cassandra_username: str | None = Field(None, description="CQL user (optional).")
    cassandra_password: str | None = Field(None, description="CQL password (optional).")
    jwt_issuer: str = Field("chat-auth", description="`iss` of access tokens (checked exactly).")
    jwt_audience: str = Field("chat", description="`aud` of access tokens (checked exactly).")
    jwks_url: str = Field(
        "http://127.0.0.1:8001/.well-known/jwks.json",
        description="Where services fetch the auth service's public keys.",
    )
    jwks_min_refresh_seconds: float = Field(
        30.0, description="At most one JWKS refetch per this interval for an unknown `kid`."
    )
    jwks_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="A cached JWKS older than this is fetched again, so a key removed "
        "from it stops being trusted within this time.",
    )
    log_level: str = Field("INFO", description="Log level of the JSON logs.")
    cors_origins: StrList = Field(
        default_factory=list,
        description="Browser origins allowed by CORS and the WebSocket Origin check.",
    )
    max_body_bytes: int = Field(
        512 * 1024, description="Largest accepted HTTP request body; larger gets 413."
    )
    ingest_shards: int = Field(
        16, ge=1, le=1024, description="Number of ingest shard streams (fixed for a deployment)."
    )
    max_message_chars: int = Field(
        DEFAULT_MAX_MESSAGE_CHARS, ge=1, description="Longest message body, in characters."
    )
    send_rate: float = Field(
        20.0,
        gt=0,
        description="Messages per second one user may send, counted over every socket, "
        "REST post and process together (in Redis).",
    )
    send_burst: int = Field(
        40, ge=1, description="Messages one user may send at once after a quiet spell."
    )

    @model_validator(mode="after")
    def _replicas_waited_on_one_primary(self) -> ChatSettings:
        if self.redis_min_replicas and self.redis_mode == "cluster":
            raise ValueError(
                "CHAT_REDIS_MIN_REPLICAS needs one primary (single or sentinel mode): on a"
                " cluster one batch of sends spans primaries, and WAIT answers for one"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        secrets_dir = Path(os.environ.get("CHAT_SECRETS_DIR", DEFAULT_SECRETS_DIR))
        if secrets_dir.is_dir():
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        return tuple(sources)


def settings_table(*classes: type[ChatSettings]) -> list[dict[str, Any]]:
    """Rows (name, default, description) for the README's configuration table."""
    seen: dict[str, dict[str, Any]] = {}
    for cls in classes:
        for name, field in cls.model_fields.items():
            env = f"CHAT_{name.upper()}"
            if env in seen:
                seen[env]["services"].add(cls.__name__)
                continue
            default = field.get_default(call_default_factory=True)
            seen[env] = {
                "name": env,
                "default": default,
                "description": field.description or "",
                "services": {cls.__name__},
            }
    return list(seen.values())
