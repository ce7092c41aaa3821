"""Gateway settings (on top of the shared ones)."""

from __future__ import annotations

from pydantic import Field

from chat_shared.settings import ChatSettings, StrList


class GatewaySettings(ChatSettings):
    service_name: str = Field("gateway", description="Name used in logs and metrics.")
    gateway_id: str = Field(
        "",
        description="Stable id of this gateway process (default: host name and pid).",
    )
    history_url: str = Field(
        "http://127.0.0.1:8002", description="Base URL of the history service."
    )
    public_auth_url: str = Field(
        "",
        description=(
            "Auth base URL as browsers see it, for the web client (empty: same origin, "
            "as behind one Ingress host)."
        ),
    )
    public_history_url: str = Field(
        "", description="History base URL as browsers see it (empty: same origin)."
    )
    max_frame_bytes: int = Field(
        256 * 1024,
        description="Largest WebSocket frame; bigger frames close the socket with 1009.",
    )
    inbox_maxlen: int = Field(
        10_000, ge=10, description="Entries kept in each user's inbox stream (approximate)."
    )
    send_queue_frames: int = Field(
        2_000,
        ge=10,
        description="Frames queued per socket; past that, messages wait in the inbox and "
        "the socket catches up from it as fast as it reads (flow control).",
    )
    send_queue_bytes: int = Field(
        1024 * 1024,
        ge=64 * 1024,
        description="Bytes queued per socket, the same flow control by size.",
    )
    stalled_reader_seconds: float = Field(
        30.0,
        gt=0,
        description="A socket that takes no frame for this long while frames wait is "
        "closed with 1013 (it resumes from its cursor).",
    )
    presence_timeout: float = Field(
        30.0, gt=0, description="Seconds without a heartbeat before a device counts as gone."
    )
    heartbeat_interval: float = Field(
        5.0, gt=0, description="Heartbeat period announced to clients in `hello`."
    )
    fanout_lease_seconds: float = Field(
        3.0, gt=0, description="Shard lease lifetime; a dead gateway's shards move after it."
    )
    typing_rate: float = Field(
        2.0, gt=0, description="Typing frames per second per socket; the excess is dropped."
    )
    read_rate: float = Field(
        5.0,
        gt=0,
        description="Read markers per second one user may set, over all sockets (in Redis).",
    )
    revocation_recheck_seconds: float = Field(
        10.0,
        gt=0,
        description="How often every open socket's token is checked against revocations "
        "(besides the instant pub/sub notice, which can be missed).",
    )
    receipt_tick_seconds: float = Field(
        0.1,
        gt=0,
        le=5,
        description="Read receipts of one reader and conversation within this time go to "
        "the members as one, for the newest seq.",
    )
    read_burst: int = Field(30, ge=1, description="Read markers one user may set at once.")
    frame_rate: float = Field(
        50.0,
        gt=0,
        description="Frames per second one socket may send besides messages and typing "
        "(ack, read, ping, auth); with the cap on sockets per user, a bound per user.",
    )
    frame_burst: int = Field(200, ge=1, description="Such frames one socket may send at once.")
    auth_frames_per_minute: float = Field(
        6.0,
        gt=0,
        description="Token renewals (`auth` frames) per minute one user may make, over all "
        "sockets: each costs a signature check.",
    )
    handshakes_per_minute_per_user: float = Field(
        30.0, gt=0, description="WebSocket handshakes per minute allowed per user."
    )
    handshakes_per_minute_per_address: float = Field(
        600.0,
        gt=0,
        description="WebSocket handshakes per minute allowed per client address (high "
        "enough for many users behind one NAT).",
    )
    max_connections_per_user: int = Field(
        20, ge=1, description="Concurrent sockets allowed per user."
    )
    max_connections_per_ip: int = Field(
        1_000, ge=1, description="Concurrent sockets allowed per client address."
    )
    allowed_origins: StrList = Field(
        default_factory=list,
        description=(
            "Origins browsers may open the WebSocket from, besides the gateway's own. "
            "Clients that send no Origin header (apps, bots) are not affected."
        ),
    )
