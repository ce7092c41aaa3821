"""Auth service settings (on top of the shared ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chat_shared.settings import ChatSettings

# OWASP's floor for argon2id: 19 MiB of memory, 2 passes, 1 lane.
ARGON2_MIN_MEMORY_KIB = 19 * 1024
ARGON2_MIN_TIME_COST = 2


class AuthSettings(ChatSettings):
    service_name: str = Field("auth", description="Name used in logs and metrics.")

    access_token_ttl_seconds: int = Field(
        15 * 60, ge=60, le=24 * 3600, description="Lifetime of access tokens."
    )
    refresh_token_ttl_seconds: int = Field(
        30 * 24 * 3600, ge=300, description="Lifetime of each refresh token (rotated on use)."
    )
    refresh_family_max_seconds: int = Field(
        90 * 24 * 3600,
        ge=300,
        description="Longest a sign-in lasts however often it is refreshed; then the "
        "user signs in again.",
    )
    refresh_reuse_grace_seconds: float = Field(
        10.0,
        ge=0,
        le=60,
        description="A refresh token used again within this time of its first use gets "
        "the same new pair (two tabs, a retried request); later reuse revokes the "
        "session as stolen. 0 turns the grace off.",
    )
    signing_keys_dir: Path | None = Field(
        None,
        description=(
            "Folder of PEM private signing keys (EC P-256 or RSA). The newest by file name "
            "signs; all are published in the JWKS. Empty: `<data_dir>/keys`."
        ),
    )
    signing_keys_generate: bool = Field(
        True,
        description=(
            "Generate and keep a key (mode 0600) when the key folder has none. Turn off "
            "where keys come from a mounted secret, so a missing secret fails loudly."
        ),
    )
    argon2_time_cost: int = Field(
        3, ge=ARGON2_MIN_TIME_COST, le=64, description="argon2id passes (t)."
    )
    argon2_memory_kib: int = Field(
        64 * 1024,
        ge=ARGON2_MIN_MEMORY_KIB,
        le=4 * 1024 * 1024,
        description="argon2id memory per hash in KiB (m).",
    )
    argon2_parallelism: int = Field(1, ge=1, le=64, description="argon2id lanes (p).")
    max_concurrent_hashes: int = Field(
        4,
        ge=1,
        le=256,
        description="Password hashes computed at once; more wait (memory is m KiB each).",
    )
    hash_wait_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest wait for a hashing slot before answering 503 (overload).",
    )
    login_free_failures: int = Field(
        5,
        ge=1,
        description="Failed logins of one name from one address before each further "
        "failure doubles that pair's wait (1 s, 2 s, 4 s...).",
    )
    login_backoff_max_seconds: float = Field(
        15 * 60, gt=0, description="Longest wait of one name and address pair."
    )
    login_failures_per_account: int = Field(
        20,
        ge=1,
        description="Failed logins of one name, from any address, after which every "
        "attempt on it is slowed down (never refused: the owner still gets in).",
    )
    login_account_delay_seconds: float = Field(
        2.0, ge=0, le=30, description="How long each attempt on such a name waits."
    )
    login_failures_per_address: int = Field(
        500,
        ge=1,
        description="Failed logins from one client address, over every name, within the "
        "window (high enough for many users behind one NAT).",
    )
    login_failure_window_seconds: int = Field(
        15 * 60,
        ge=1,
        description="Window of the login failure counters; every wait ends with it.",
    )
    user_searches_per_minute: float = Field(
        30.0, gt=0, description="User searches (GET /v1/users?q=) per minute per caller."
    )
    signups_per_address: int = Field(
        20, ge=1, description="Sign-ups allowed per client address within the window."
    )
    signup_window_seconds: int = Field(3600, ge=1, description="Window of the sign-up counter.")
    refresh_purge_interval_seconds: float = Field(
        3600.0, gt=0, description="How often expired refresh tokens are purged (SQLite)."
    )
    last_active_batch_size: int = Field(
        200, ge=1, le=10_000, description="Presence stream entries recorded per write."
    )
    last_active_claim_idle_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "How long a presence stream entry may sit unacknowledged with another auth "
            "process (one that crashed) before this one takes it over."
        ),
    )

    @property
    def keys_dir(self) -> Path:
        return self.signing_keys_dir or self.data_dir / "keys"
