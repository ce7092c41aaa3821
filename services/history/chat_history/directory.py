"""The user directory over HTTP: the auth service says which user ids exist.

``GET {auth_url}/v1/users?ids=a,b`` with the caller's own access token, so the auth
service applies its usual rules to the question. At most 100 ids per request.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx2

from chat_shared.errors import Unauthorized, Unavailable

_IDS_PER_REQUEST = 100


class HttpUserDirectory:
    def __init__(self, http: httpx2.AsyncClient, auth_url: str, *, timeout: float) -> None:
        self.http = http
        self.url = auth_url.rstrip("/") + "/v1/users"
        self.timeout = timeout

    async def existing(self, user_ids: Sequence[str], *, bearer_token: str) -> set[str]:
        wanted = list(dict.fromkeys(user_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), _IDS_PER_REQUEST):
            chunk = wanted[start : start + _IDS_PER_REQUEST]
            found |= await self._lookup(chunk, bearer_token) & set(chunk)
        return found

    async def _lookup(self, ids: list[str], bearer_token: str) -> set[str]:
        try:
            response = await self.http.get(
                self.url,
                params={"ids": ",".join(ids)},
                headers={"Authorization": f"Bearer {bearer_token}"},
                timeout=self.timeout,
            )
        except httpx2.HTTPError as exc:
            raise Unavailable("The user directory does not answer; retry shortly.") from exc
        if response.status_code == 401:
            raise Unauthorized("The access token was refused by the user directory.")
        if response.status_code != 200:
            raise Unavailable("The user directory does not answer; retry shortly.")
        try:
            users = response.json().get("users", [])
            return {u["id"] for u in users if isinstance(u, dict) and isinstance(u.get("id"), str)}
        except (ValueError, AttributeError, TypeError) as exc:
            raise Unavailable("The user directory gave an unreadable answer.") from exc
