"""Calls from the gateway to the other services, off the hot path.

Only two rare cases need history: the members of a conversation are not in the Redis
cache (history fills it when it reads membership), and a conversation's seq counter is
missing (history reports the highest seq it knows). Both use the caller's own token,
so history applies its usual membership rules.
"""

from __future__ import annotations

import httpx2

from chat_shared.errors import NotFound, Unavailable


class HistoryClient:
    def __init__(self, http: httpx2.AsyncClient, base_url: str, token: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token

    async def _conversation(self, conversation_id: str) -> dict[str, object]:
        try:
            response = await self.http.get(
                f"{self.base_url}/v1/conversations/{conversation_id}",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=5.0,
            )
        except httpx2.HTTPError as exc:
            raise Unavailable("History is unreachable; retry shortly.") from exc
        if response.status_code in (403, 404, 422):
            raise NotFound("No such conversation.")
        if response.status_code != 200:
            raise Unavailable("History did not answer; retry shortly.")
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def load_members(self, conversation_id: str) -> None:
        await self._conversation(conversation_id)

    async def last_seq(self, conversation_id: str) -> int:
        value = (await self._conversation(conversation_id)).get("last_seq", 0)
        return int(value) if isinstance(value, int) else 0
