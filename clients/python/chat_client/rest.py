"""One authenticated JSON request: attach a fresh token, retry once after a 401 with a
refreshed one, and turn error answers into typed exceptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import orjson

from chat_client.errors import ApiError, TransportError, error_for_status
from chat_client.tokens import TokenKeeper


def problem_of(response: httpx2.Response) -> ApiError:
    """The typed exception for an error answer (problem+json, plain JSON or text)."""
    problem: Mapping[str, Any] = {}
    try:
        parsed = orjson.loads(response.content)
        if isinstance(parsed, dict):
            problem = parsed
    except orjson.JSONDecodeError:
        text = response.text.strip()
        problem = {"detail": text[:500] or response.reason_phrase}
    retry_after: float | None = None
    header = response.headers.get("retry-after")
    if header is not None:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    return error_for_status(response.status_code, problem, retry_after)


class Requester:
    def __init__(self, http: httpx2.AsyncClient, tokens: TokenKeeper) -> None:
        self.http = http
        self.tokens = tokens

    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        form: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> httpx2.Response:
        """The 2xx answer, or an :class:`ApiError` / :class:`TransportError`."""
        token = await self.tokens.access_token() if authenticated else None
        response = await self._send(method, url, json, params, form, token)
        if response.status_code == 401 and token is not None:
            # Expired early (clock skew) or revoked: one refresh, one retry.
            fresh = await self.tokens.refresh(stale=token)
            response = await self._send(method, url, json, params, form, fresh.access_token)
        if response.status_code >= 400:
            raise problem_of(response)
        return response

    async def _send(
        self,
        method: str,
        url: str,
        json: Any,
        params: Mapping[str, str | int] | None,
        form: Mapping[str, str] | None,
        token: str | None,
    ) -> httpx2.Response:
        headers = {"Accept": "application/json, application/problem+json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content: bytes | None = None
        if json is not None:
            content = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        try:
            return await self.http.request(
                method,
                url,
                content=content,
                data=dict(form) if form is not None else None,
                params=dict(params) if params is not None else None,
                headers=headers,
            )
        except httpx2.HTTPError as exc:
            raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
