"""The end of a run: the final history and membership into the run log, then the checker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2

from bench.checker import Report, check_dir
from bench.logs import HistoryRecord, LoggedMessage, LogWriter, MembershipRecord
from bench.stack import BenchUser, Conversation

PAGE = 200


async def fetch_history(
    history_url: str, token: str, conversation_id: str, http: httpx2.AsyncClient
) -> list[dict[str, Any]]:
    """Every message of a conversation, oldest first, as a member sees it."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        answer = await http.get(
            f"{history_url}/v1/conversations/{conversation_id}/messages",
            params={"after_seq": after, "limit": PAGE},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        page = answer.json()
        found += page["messages"]
        if not page["messages"] or not page["has_more"]:
            return found
        after = page["messages"][-1]["seq"]


async def record_final_state(
    log_dir: Path,
    history_url: str,
    conversations: Sequence[Conversation],
    users: Mapping[str, BenchUser],
) -> dict[str, int]:
    """Write every conversation's final history and members (after the last send);
    answers each conversation's last seq, which complete devices must reach."""
    last: dict[str, int] = {}
    limit = asyncio.Semaphore(8)
    with LogWriter(log_dir, "final") as writer:
        async with httpx2.AsyncClient(timeout=60) as http:

            async def one(conversation: Conversation) -> None:
                token = users[conversation.members[0]].token
                async with limit:
                    messages = await fetch_history(history_url, token, conversation.id, http)
                last[conversation.id] = max((m["seq"] for m in messages), default=0)
                writer.write_all([HistoryRecord(LoggedMessage.from_contract(m)) for m in messages])
                writer.write(MembershipRecord(conversation.id, conversation.members))

            await asyncio.gather(*(one(c) for c in conversations))
    return last


def checker_summary(log_dir: Path) -> Report:
    return check_dir(log_dir, max_examples=5)
