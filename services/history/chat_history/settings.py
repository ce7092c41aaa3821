"""History settings (on top of the shared ones)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from chat_shared.ingest import MAX_CLIENT_ID_CHARS
from chat_shared.settings import ChatSettings

MAX_PAGE_LIMIT = 200

# A store partition holds one bucket of a conversation's messages. Cassandra reads,
# compacts and repairs a partition as one piece on each replica, and those costs grow
# with its size; past about 100 MB they hurt. So the largest possible bucket (every
# message at the maximum size) must stay under this bound.
MAX_PARTITION_BYTES = 100 * 1024 * 1024
# Beyond the body: the ids, client id, sender and times, and per-cell metadata.
ROW_OVERHEAD_BYTES = 512 + 4 * MAX_CLIENT_ID_CHARS


def largest_row_bytes(max_message_chars: int) -> int:
    """A stored message at its largest: 4 bytes per character at worst in UTF-8."""
    return 4 * max_message_chars + ROW_OVERHEAD_BYTES


class HistorySettings(ChatSettings):
    service_name: str = Field("history", description="Name used in logs and metrics.")
    conversations_per_minute: float = Field(
        20.0,
        gt=0,
        description="Conversations one user may create per minute (direct or group).",
    )
    rest_writes_per_second: float = Field(
        10.0,
        gt=0,
        description="REST writes per second one user may make besides messages (members, "
        "read markers...), over every history process.",
    )
    rest_write_burst: int = Field(30, ge=1, description="Such writes one user may make at once.")
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
            "page, so one page reads at most two partitions, and small enough that a "
            "partition of maximum-size messages stays under 100 MiB. Fixed for a "
            "deployment."
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
    seq_fence_check_seconds: float = Field(
        1.0,
        gt=0,
        description="How often history checks that Redis has not gone back in time "
        "(a failover, a restore) and writes the seq floors again if it has.",
    )
    maintenance_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="How often history checks the membership cache marker, trims the "
        "streams and refreshes the lag gauges.",
    )

    @model_validator(mode="after")
    def _partitions_stay_bounded(self) -> Self:
        largest = self.message_bucket_size * largest_row_bytes(self.max_message_chars)
        if largest > MAX_PARTITION_BYTES:
            fits = MAX_PARTITION_BYTES // largest_row_bytes(self.max_message_chars)
            raise ValueError(
                f"a partition of {self.message_bucket_size} messages of"
                f" {self.max_message_chars} characters could reach {largest / 2**20:.0f} MiB,"
                f" over the {MAX_PARTITION_BYTES // 2**20} MiB bound: lower"
                f" CHAT_MESSAGE_BUCKET_SIZE to at most {fits} (and at least"
                f" {MAX_PAGE_LIMIT}) or CHAT_MAX_MESSAGE_CHARS"
            )
        return self
