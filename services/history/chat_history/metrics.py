"""History's own Prometheus series, on the app's registry."""

from __future__ import annotations

from prometheus_client import Gauge

from chat_shared.web.observability import ServiceMetrics


class HistoryMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        self.base = base
        self.persisted = base.counter(
            "chat_history_messages_persisted_total", "Messages written to the store."
        )
        self.dead_lettered = base.counter(
            "chat_history_dead_letters_total",
            "Shard-stream entries moved to the dead-letter stream after repeated failures.",
        )
        self.seq_conflicts = base.counter(
            "chat_history_seq_conflicts_total",
            "Messages offered at a (conversation, seq) that already holds another message:"
            " kept out of the store and dead-lettered (a seq was handed out twice).",
        )
        self.redis_rollbacks = base.counter(
            "chat_history_redis_rollbacks_total",
            "Shards found gone back in time in Redis (a failover, a restore); their seq"
            " floors were written again.",
        )
        self.redelivered = base.counter(
            "chat_history_entries_redelivered_total",
            "Shard-stream entries handled again after a claim (a consumer died or failed).",
        )
        self.read_markers = base.counter(
            "chat_history_read_markers_applied_total",
            "Read markers applied from the gateway's read-marker stream.",
        )
        self.trimmed = base.counter(
            "chat_history_stream_entries_trimmed_total",
            "Stream entries removed by retention (all consumer groups were done with them).",
        )
        self.lag = Gauge(
            "chat_history_stream_lag",
            "Entries a consumer group has pending or not yet read, over all shard streams.",
            ["group"],
            registry=base.registry,
        )
        self.pending = Gauge(
            "chat_history_stream_pending",
            "Entries delivered to a consumer group and not yet acknowledged.",
            ["group"],
            registry=base.registry,
        )
