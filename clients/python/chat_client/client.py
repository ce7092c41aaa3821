"""The REST side of the SDK: typed calls to the auth and history services (and the
gateway's presence endpoint), with tokens kept fresh by a :class:`TokenKeeper`.

``connect()`` opens the realtime side (:class:`RealtimeSession`) with the same tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx2
import orjson

from chat_client.connection import SessionOptions
from chat_client.models import Conversation, Message, MessagePage, Presence, TokenPair, User
from chat_client.outbox import new_client_id
from chat_client.rest import Requester
from chat_client.session import RealtimeSession
from chat_client.state import DeviceState
from chat_client.tokens import TokenKeeper

DEFAULT_AUTH_URL = "http://127.0.0.1:8001"
DEFAULT_HISTORY_URL = "http://127.0.0.1:8002"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000"
MAX_PAGE = 200  # the history service's largest page


def _http_scheme(url: str) -> str:
    for socket_scheme, http_scheme in (("wss://", "https://"), ("ws://", "http://")):
        if url.startswith(socket_scheme):
            return http_scheme + url[len(socket_scheme) :]
    return url


def _path_part(value: str) -> str:
    return quote(value, safe="")


class ChatClient:
    """Typed REST calls. Use as ``async with ChatClient(...) as client:``.

    Tokens: ``login`` stores the pair it gets; every authenticated call renews the access
    token shortly before it expires, and once more after a 401. ``on_tokens`` hears every
    new pair (or None), e.g. to keep it in a keychain.
    """

    def __init__(
        self,
        *,
        auth_url: str = DEFAULT_AUTH_URL,
        history_url: str = DEFAULT_HISTORY_URL,
        gateway_url: str = DEFAULT_GATEWAY_URL,
        tokens: TokenPair | None = None,
        refresh_margin: float | None = None,
        timeout: float = 10.0,
        on_tokens: Callable[[TokenPair | None], None] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.history_url = history_url.rstrip("/")
        # REST on the gateway (presence) needs http(s); the socket URL derives from it.
        self.gateway_url = _http_scheme(gateway_url.rstrip("/"))
        self.tokens = TokenKeeper(tokens, refresh_margin=refresh_margin)
        self.tokens.bind(self._refresh_pair)
        if on_tokens is not None:
            self.tokens.subscribe(on_tokens)
        self._http = httpx2.AsyncClient(timeout=timeout, transport=transport)
        self._api = Requester(self._http, self.tokens)

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def user_id(self) -> str | None:
        """The logged-in user's id (from the access token), or None."""
        return self.tokens.user_id

    @property
    def websocket_url(self) -> str:
        base = self.gateway_url
        if base.startswith("https://"):
            base = "wss://" + base[len("https://") :]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://") :]
        return f"{base}/v1/ws"

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self._api.call(method, url, **kwargs)
        return orjson.loads(response.content)

    # Auth ------------------------------------------------------------------------

    async def signup(
        self, username: str, email: str, password: str, display_name: str | None = None
    ) -> User:
        body: dict[str, str] = {"username": username, "email": email, "password": password}
        if display_name is not None:
            body["display_name"] = display_name
        data = await self._json(
            "POST", f"{self.auth_url}/v1/auth/signup", json=body, authenticated=False
        )
        return User.from_json(data)

    async def login(self, login: str, password: str) -> TokenPair:
        """Sign in with a username or email; the client keeps the pair."""
        data = await self._json(
            "POST",
            f"{self.auth_url}/v1/auth/login",
            json={"login": login, "password": password},
            authenticated=False,
        )
        pair = TokenPair.from_json(data)
        self.tokens.set(pair)
        return pair

    async def refresh(self) -> TokenPair:
        """Renew the tokens now (normally automatic)."""
        return await self.tokens.refresh()

    async def _refresh_pair(self, refresh_token: str) -> TokenPair:
        data = await self._json(
            "POST",
            f"{self.auth_url}/v1/auth/refresh",
            json={"refresh_token": refresh_token},
            authenticated=False,
        )
        return TokenPair.from_json(data)

    async def logout(self) -> None:
        """Revoke the refresh token's family and forget the tokens."""
        pair = self.tokens.pair
        if pair is None:
            return
        await self._api.call(
            "POST",
            f"{self.auth_url}/v1/auth/logout",
            json={"refresh_token": pair.refresh_token},
            authenticated=False,
        )
        self.tokens.set(None)

    async def me(self) -> User:
        return User.from_json(await self._json("GET", f"{self.auth_url}/v1/users/me"))

    async def update_me(
        self,
        *,
        display_name: str | None = None,
        email: str | None = None,
        password: str | None = None,
        current_password: str | None = None,
    ) -> User:
        """Change profile fields; a new password needs ``current_password``."""
        fields = {
            "display_name": display_name,
            "email": email,
            "password": password,
            "current_password": current_password,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        return User.from_json(await self._json("PATCH", f"{self.auth_url}/v1/users/me", json=body))

    async def delete_me(self) -> None:
        await self._api.call("DELETE", f"{self.auth_url}/v1/users/me")
        self.tokens.set(None)

    async def user(self, user_id: str) -> User:
        url = f"{self.auth_url}/v1/users/{_path_part(user_id)}"
        return User.from_json(await self._json("GET", url))

    async def search_users(self, prefix: str, limit: int = 20) -> list[User]:
        """Users whose username starts with ``prefix``."""
        data = await self._json(
            "GET", f"{self.auth_url}/v1/users", params={"q": prefix, "limit": limit}
        )
        return [User.from_json(u) for u in data["users"]]

    async def users_by_id(self, user_ids: Iterable[str]) -> list[User]:
        """Public profiles of the given ids (unknown ids are left out)."""
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return []
        data = await self._json(
            "GET", f"{self.auth_url}/v1/users", params={"ids": ",".join(wanted)}
        )
        return [User.from_json(u) for u in data["users"]]

    # History ---------------------------------------------------------------------

    async def conversations(self) -> list[Conversation]:
        """The caller's conversations, most recent activity first."""
        data = await self._json("GET", f"{self.history_url}/v1/conversations")
        return [Conversation.from_json(c) for c in data["conversations"]]

    async def conversation(self, conversation_id: str) -> Conversation:
        url = f"{self.history_url}/v1/conversations/{_path_part(conversation_id)}"
        return Conversation.from_json(await self._json("GET", url))

    async def create_direct(self, peer_id: str) -> Conversation:
        """The direct conversation with ``peer_id`` (created, or the existing one)."""
        data = await self._json(
            "POST",
            f"{self.history_url}/v1/conversations",
            json={"kind": "direct", "members": [peer_id]},
        )
        return Conversation.from_json(data)

    async def create_group(self, name: str, member_ids: Iterable[str]) -> Conversation:
        """A new group owned by the caller, with the given other members."""
        data = await self._json(
            "POST",
            f"{self.history_url}/v1/conversations",
            json={"kind": "group", "name": name, "members": list(member_ids)},
        )
        return Conversation.from_json(data)

    async def add_members(self, conversation_id: str, user_ids: Iterable[str]) -> Conversation:
        url = f"{self.history_url}/v1/conversations/{_path_part(conversation_id)}/members"
        data = await self._json("POST", url, json={"user_ids": list(user_ids)})
        return Conversation.from_json(data)

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        url = (
            f"{self.history_url}/v1/conversations/{_path_part(conversation_id)}"
            f"/members/{_path_part(user_id)}"
        )
        await self._api.call("DELETE", url)

    async def messages(
        self,
        conversation_id: str,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> MessagePage:
        """One page: newest first (no cursor or ``before_seq``), oldest first with
        ``after_seq``."""
        params: dict[str, str | int] = {"limit": limit}
        if before_seq is not None:
            params["before_seq"] = before_seq
        if after_seq is not None:
            params["after_seq"] = after_seq
        url = f"{self.history_url}/v1/conversations/{_path_part(conversation_id)}/messages"
        return MessagePage.from_json(await self._json("GET", url, params=params))

    async def iter_messages(
        self, conversation_id: str, *, after_seq: int = 0, page_size: int = MAX_PAGE
    ) -> AsyncIterator[Message]:
        """Every message after ``after_seq``, oldest first, page by page."""
        after = after_seq
        while True:
            page = await self.messages(conversation_id, after_seq=after, limit=page_size)
            for message in page.messages:
                after = max(after, message.seq)
                yield message
            if not page.has_more or not page.messages:
                return

    async def post_message(
        self, conversation_id: str, body: str, client_id: str | None = None
    ) -> Message:
        """Post over REST. Retrying with the same ``client_id`` answers the original."""
        url = f"{self.history_url}/v1/conversations/{_path_part(conversation_id)}/messages"
        payload = {"body": body, "client_id": client_id or new_client_id()}
        return Message.from_json(await self._json("POST", url, json=payload))

    async def mark_read(self, conversation_id: str, seq: int) -> None:
        """Move the caller's read marker forward to ``seq`` (never back)."""
        url = f"{self.history_url}/v1/conversations/{_path_part(conversation_id)}/read"
        await self._api.call("POST", url, json={"seq": seq})

    # Gateway ---------------------------------------------------------------------

    async def presence(self, user_ids: Iterable[str]) -> list[Presence]:
        """Online status of contacts (users who share a conversation with the caller)."""
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            return []
        data = await self._json(
            "GET", f"{self.gateway_url}/v1/presence", params={"user_ids": ",".join(wanted)}
        )
        return [Presence.from_json(p) for p in data["presence"]]

    def connect(
        self,
        *,
        state: DeviceState | None = None,
        state_file: str | Path | None = None,
        options: SessionOptions | None = None,
    ) -> RealtimeSession:
        """A realtime session (not yet started): ``async with client.connect() as s:``.

        ``state_file`` keeps the device id, cursor and last seqs across restarts: it is
        read if it exists and written as the session goes and when it closes.
        """
        if state is None:
            state = DeviceState.load(state_file) if state_file is not None else DeviceState()
        return RealtimeSession(
            self,
            state=state,
            state_file=Path(state_file) if state_file is not None else None,
            options=options or SessionOptions(),
        )
