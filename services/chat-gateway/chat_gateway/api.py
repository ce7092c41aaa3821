"""REST endpoints of the gateway (thin: presence lives in ``presence.py``)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from chat_gateway.runtime import GatewayRuntime
from chat_shared.errors import Invalid
from chat_shared.web.auth import CurrentUser
from chat_shared.web.problems import problem_responses

router = APIRouter(tags=["presence"])

MAX_PRESENCE_IDS = 200
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class UserPresence(BaseModel):
    user_id: str
    status: Literal["online", "offline"]
    last_active_at: str | None


class PresenceList(BaseModel):
    presence: list[UserPresence]


@router.get(
    "/v1/presence",
    response_model=PresenceList,
    summary="Presence of some of your contacts",
    description=(
        "Online status and last activity for up to 200 users. Only users who share a "
        "conversation with you are reported; other ids are left out."
    ),
    responses=problem_responses(401, 422),
)
async def get_presence(
    request: Request,
    user: CurrentUser,
    user_ids: Annotated[str, Query(max_length=200 * 65, description="Comma-separated ids")],
) -> PresenceList:
    runtime: GatewayRuntime = request.state.gateway
    wanted = [u for u in dict.fromkeys(p.strip() for p in user_ids.split(",")) if u]
    if not wanted or len(wanted) > MAX_PRESENCE_IDS:
        raise Invalid(f"user_ids must list 1 to {MAX_PRESENCE_IDS} ids")
    if not all(_ID.match(u) for u in wanted):
        raise Invalid("user_ids must be user ids")
    contacts = await runtime.presence.contacts(user.user_id)
    visible = [u for u in wanted if u in contacts]
    return PresenceList(
        presence=[UserPresence(**p) for p in await runtime.presence.status(visible)]
    )
