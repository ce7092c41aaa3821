"""History settings (on top of the shared ones)."""

from __future__ import annotations

from pydantic import Field

from chat_shared.settings import ChatSettings

MAX_PAGE_LIMIT = 200


class HistorySettings(ChatSettings):
    service_name: str = Field("history", description="Name used in logs and metrics.")
    auth_url: str = Field(
        "http://127.0.0.1:8001",
        description="Base URL of the auth service, asked which user ids exist.",
    )
    directory_timeout_seconds: float = Field(
        5.0, gt=0, description="Timeout of one user-directory request to the auth service."
    )
    max_group_members: int = Field(
        100, ge=2, le=10_000, description="Most members a group conversation may have."
    )
    message_bucket_size: int = Field(
        1000,
        ge=MAX_PAGE_LIMIT,
        description=(
            "Messages per store partition (bucket = seq // size). At least the largest "
            "page, so one page reads at most two partitions. Fixed for a deployment."
        ),
    )
    consumer_enabled: bool = Field(
        True,
        description="Run the persistence consumers inside the API process "
        "(`python -m chat_history.consumer` runs them alone).",
    )
    consumer_name: str = Field(
        "",
        description="Consumer name in the `history` group (default: host, pid and a "
        "random suffix, unique per process).",
    )
    consumer_batch_size: int = Field(
        200, ge=1, le=10_000, description="Entries read per shard stream per XREADGROUP."
    )
    consumer_block_ms: int = Field(
        1000, ge=1, le=60_000, description="How long one XREADGROUP waits for new entries."
    )
    claim_idle_ms: int = Field(
        30_000,
        ge=1,
        description="Pending entries idle longer than this are claimed from their "
        "consumer (presumed dead) and retried.",
    )
    claim_interval_seconds: float = Field(
        5.0, gt=0, description="How often pending entries are checked for claiming."
    )
    dead_letter_after: int = Field(
        5,
        ge=1,
        description="An entry delivered more than this many times without being stored "
        "moves to the dead-letter stream with its error.",
    )
    lag_degraded_threshold: int = Field(
        10_000,
        ge=1,
        description="Entries pending or not yet read by the `history` group beyond "
        "which /readyz reports `degraded`.",
    )
    maintenance_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="How often history checks the membership cache marker, trims the "
        "streams and refreshes the lag gauges.",
    )
