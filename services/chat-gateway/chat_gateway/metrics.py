"""Gateway metrics, in the app's own registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from chat_shared.web.observability import ServiceMetrics


class GatewayMetrics:
    def __init__(self, base: ServiceMetrics) -> None:
        registry = base.registry
        self.connections = Gauge(
            "chat_gateway_connections",
            "WebSocket sessions open on this gateway.",
            registry=registry,
        )
        self.frames_in = Counter(
            "chat_gateway_frames_in_total", "Frames received.", registry=registry
        )
        self.frames_out = Counter(
            "chat_gateway_frames_out_total", "Frames written.", registry=registry
        )
        self.messages_sent = Counter(
            "chat_gateway_messages_ingested_total",
            "Messages accepted by the ingest.",
            registry=registry,
        )
        self.slow_reader_closes = Counter(
            "chat_gateway_slow_reader_closes_total",
            "Sockets closed with 1013.",
            registry=registry,
        )
        self.closes = Counter(
            "chat_gateway_session_closes_total",
            "Sessions ended, by close code (1000 normal, 1008 abuse, 1013 slow reader...).",
            ["code"],
            registry=registry,
        )
        self.rejected_handshakes = Counter(
            "chat_gateway_rejected_handshakes_total",
            "Handshakes refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.fanout_messages = Counter(
            "chat_gateway_fanout_messages_total", "Shard entries fanned out.", registry=registry
        )
        self.fanout_inbox_appends = Counter(
            "chat_gateway_fanout_inbox_appends_total",
            "Inbox appends by the fan-out.",
            registry=registry,
        )
        self.fanout_shards = Gauge(
            "chat_gateway_fanout_shards",
            "Ingest shards this gateway fans out.",
            registry=registry,
        )
