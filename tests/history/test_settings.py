"""History's settings refuse a configuration whose store partitions could grow
without bound."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chat_history.settings import (
    MAX_PAGE_LIMIT,
    MAX_PARTITION_BYTES,
    HistorySettings,
    largest_row_bytes,
)


def settings(**values: object) -> HistorySettings:
    return HistorySettings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]


def test_the_defaults_keep_a_full_partition_under_the_bound() -> None:
    defaults = settings()
    largest = defaults.message_bucket_size * largest_row_bytes(defaults.max_message_chars)
    assert largest <= MAX_PARTITION_BYTES


def test_a_bucket_too_big_for_the_message_size_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError, match="CHAT_MESSAGE_BUCKET_SIZE to at most 261"):
        settings(max_message_chars=100_000)
    assert settings(max_message_chars=100_000, message_bucket_size=261)


def test_a_bucket_smaller_than_a_page_is_refused() -> None:
    with pytest.raises(ValidationError):
        settings(message_bucket_size=MAX_PAGE_LIMIT - 1)
