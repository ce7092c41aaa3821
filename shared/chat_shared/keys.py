"""Every Redis key and stream name the services share, in one place.

Hash tags keep the keys one script touches in one Redis Cluster slot:
``{s<n>}`` for ingest shard n (its stream, its conversations' seq counters and dedup
records), ``{u<id>}`` for everything about one user (inbox, cursors, sessions).
"""

from __future__ import annotations

import zlib

HISTORY_GROUP = "history"
FANOUT_GROUP = "fanout"
CONSUMER_GROUPS = (HISTORY_GROUP, FANOUT_GROUP)

DEAD_LETTER_STREAM = "chat:deadletter"
READ_MARKERS_STREAM = "chat:reads"
GATEWAYS_ZSET = "chat:gateways"
PRESENCE_GATEWAYS_ZSET = "chat:presence:gateways"
LAST_ACTIVE_STREAM = "chat:lastactive"


def ingest_shard_for(conversation_id: str, shards: int) -> int:
    """A conversation always maps to the same shard (stable across processes)."""
    return zlib.crc32(conversation_id.encode()) % shards


def shard_stream(shard: int) -> str:
    return f"chat:{{s{shard}}}:ingest"


def shard_seq(shard: int, conversation_id: str) -> str:
    return f"chat:{{s{shard}}}:seq:{conversation_id}"


def shard_seq_floor(shard: int, conversation_id: str) -> str:
    """The highest seq history has stored for the conversation, written back by
    history after each write (same slot as the counter). The ingest never hands out a
    seq at or below it, even when the counter went back (a failover, a restore)."""
    return f"chat:{{s{shard}}}:seq-floor:{conversation_id}"


def shard_fence_mark(shard: int) -> str:
    """Counts history's floor writes on the shard. A value lower than one a history
    process saw means Redis went back in time: the floors are written again."""
    return f"chat:{{s{shard}}}:fence-mark"


def shard_dedup(shard: int, conversation_id: str, sender_id: str, client_id: str) -> str:
    return f"chat:{{s{shard}}}:dedup:{conversation_id}:{sender_id}:{client_id}"


def shard_lease(shard: int) -> str:
    return f"chat:{{s{shard}}}:lease"


def members_key(conversation_id: str, shards: int) -> str:
    """Members of a conversation, in its shard's slot: the ingest script checks
    membership and appends the message in one atomic step. The set holds
    ``MEMBERS_SENTINEL`` besides the user ids, so "cached, empty" differs from "not cached"."""
    shard = ingest_shard_for(conversation_id, shards)
    return f"chat:{{s{shard}}}:members:{conversation_id}"


MEMBERS_SENTINEL = "*"
MEMBERS_TICKET_COUNTER = "chat:members:ticket"


def members_ticket_key(conversation_id: str, shards: int) -> str:
    """The ticket a cached members set was written with (same slot as the set): an
    older write never replaces a newer one (see ``chat_shared.membership``)."""
    shard = ingest_shard_for(conversation_id, shards)
    return f"chat:{{s{shard}}}:members-ticket:{conversation_id}"


def members_loaded_key() -> str:
    return "chat:members:loaded"


def members_rebuild_lease_key() -> str:
    """Held by the one history pod rebuilding the membership cache."""
    return "chat:members:rebuilding"


def user_inbox(user_id: str) -> str:
    return f"chat:{{u{user_id}}}:inbox"


def user_inbox_state(user_id: str) -> str:
    return f"chat:{{u{user_id}}}:inboxstate"


def user_cursors(user_id: str) -> str:
    return f"chat:{{u{user_id}}}:cursors"


def user_read_markers(user_id: str) -> str:
    """Conversation -> highest seq the user has read, as the gateways last raised it."""
    return f"chat:{{u{user_id}}}:read"


def user_sessions(user_id: str) -> str:
    return f"chat:{{u{user_id}}}:sessions"


def gateway_deliveries(gateway_id: str) -> str:
    return f"chat:{{g{gateway_id}}}:deliver"


def user_conversations(user_id: str) -> str:
    """Conversation ids of a user (history writes it; presence reads contacts from it)."""
    return f"chat:{{u{user_id}}}:convs"


def conversation_kind_key(conversation_id: str) -> str:
    """'direct' or 'group' (history writes it with the members)."""
    return f"chat:kind:{conversation_id}"


def user_presence(user_id: str) -> str:
    return f"chat:{{u{user_id}}}:presence"


def gateway_sessions(gateway_id: str) -> str:
    """``user_id session_id`` of every session a gateway holds (for cleanup after a crash)."""
    return f"chat:{{g{gateway_id}}}:sessions"


def gateway_cleanup_lock(gateway_id: str) -> str:
    return f"chat:{{g{gateway_id}}}:cleanup"
