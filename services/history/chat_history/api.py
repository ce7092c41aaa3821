"""HTTP routes of the history service: thin wrappers over the domain services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from chat_history.conversations import Conversations
from chat_history.messages import DEFAULT_PAGE_LIMIT, Messages
from chat_history.read_markers import ReadMarkers
from chat_history.runtime import HistoryRules
from chat_history.schemas import (
    MAX_SEQ,
    ConversationCreate,
    ConversationListOut,
    ConversationOut,
    MembersAdd,
    MessageCreate,
    MessageOut,
    MessagePageOut,
    ReadMarkerUpdate,
)
from chat_history.settings import MAX_PAGE_LIMIT
from chat_shared.limits import RateLimiter
from chat_shared.web.auth import CurrentUser, bearer_scheme
from chat_shared.web.problems import problem_responses

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

# Header on a POST .../messages answer that returns an earlier message for a retried
# client_id (the status is 201 either way, so retries look the same to simple clients).
REPLAYED_HEADER = "Idempotent-Replayed"


def _conversations(request: Request) -> Conversations:
    service: Conversations = request.state.conversations
    return service


def _messages(request: Request) -> Messages:
    service: Messages = request.state.messages
    return service


def _read_markers(request: Request) -> ReadMarkers:
    service: ReadMarkers = request.state.read_markers
    return service


@dataclass(frozen=True)
class WriteLimits:
    limiter: RateLimiter
    rules: HistoryRules


async def _limit_writes(request: Request, user: CurrentUser) -> None:
    """Every REST write counts against the caller's write limit (429 past it)."""
    limits: WriteLimits = request.state.limits
    await limits.rules.check(limits.limiter, user.user_id, limits.rules.write)


LimitedWrite = Depends(_limit_writes)


def _bearer(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    # CurrentUser has already refused a request without one.
    return credentials.credentials if credentials else ""


ConversationsDep = Annotated[Conversations, Depends(_conversations)]
MessagesDep = Annotated[Messages, Depends(_messages)]
ReadMarkersDep = Annotated[ReadMarkers, Depends(_read_markers)]
BearerToken = Annotated[str, Depends(_bearer)]
ConversationId = Annotated[str, Path(min_length=1, max_length=128)]
MemberId = Annotated[str, Path(min_length=1, max_length=128)]


@router.post(
    "",
    status_code=201,
    response_model=ConversationOut,
    summary="Start a direct conversation or create a group",
    responses={
        200: {"description": "The pair's existing direct conversation", "model": ConversationOut},
        **problem_responses(400, 401, 413, 422, 429, 503),
    },
    dependencies=[LimitedWrite],
)
async def create_conversation(
    request: Request,
    user: CurrentUser,
    token: BearerToken,
    service: ConversationsDep,
    response: Response,
    body: Annotated[ConversationCreate, Body()],
) -> dict[str, Any]:
    limits: WriteLimits = request.state.limits
    await limits.rules.check(limits.limiter, user.user_id, limits.rules.conversation)
    if body.kind == "direct":
        view, created = await service.create_direct(user.user_id, body.members, bearer_token=token)
        if not created:
            response.status_code = 200
    else:
        view = await service.create_group(user.user_id, body.name, body.members, bearer_token=token)
    return view.public()


@router.get(
    "",
    response_model=ConversationListOut,
    summary="My conversations, most recent activity first",
    responses=problem_responses(401),
)
async def list_conversations(user: CurrentUser, service: ConversationsDep) -> dict[str, Any]:
    views = await service.list_for(user.user_id)
    return {"conversations": [v.public() for v in views]}


@router.get(
    "/{conversation_id}",
    response_model=ConversationOut,
    summary="One conversation I am a member of",
    responses=problem_responses(401, 404),
)
async def get_conversation(
    user: CurrentUser, service: ConversationsDep, conversation_id: ConversationId
) -> dict[str, Any]:
    return (await service.view(user.user_id, conversation_id)).public()


@router.post(
    "/{conversation_id}/members",
    response_model=ConversationOut,
    summary="Add members to a group (owner only)",
    responses=problem_responses(400, 401, 403, 404, 413, 422, 429, 503),
    dependencies=[LimitedWrite],
)
async def add_members(
    user: CurrentUser,
    token: BearerToken,
    service: ConversationsDep,
    conversation_id: ConversationId,
    body: MembersAdd,
) -> dict[str, Any]:
    view = await service.add_members(
        user.user_id, conversation_id, body.user_ids, bearer_token=token
    )
    return view.public()


@router.delete(
    "/{conversation_id}/members/{user_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a member (the owner removes anyone; anyone may leave)",
    responses=problem_responses(401, 403, 404, 422, 429),
    dependencies=[LimitedWrite],
)
async def remove_member(
    user: CurrentUser,
    service: ConversationsDep,
    conversation_id: ConversationId,
    user_id: MemberId,
) -> Response:
    await service.remove_member(user.user_id, conversation_id, user_id)
    return Response(status_code=204)


@router.get(
    "/{conversation_id}/messages",
    response_model=MessagePageOut,
    summary="A page of messages",
    description="Newest first without a cursor or with `before_seq`; oldest first with "
    "`after_seq`. Giving both is refused.",
    responses=problem_responses(401, 404, 422),
)
async def list_messages(
    user: CurrentUser,
    service: MessagesDep,
    conversation_id: ConversationId,
    before_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = DEFAULT_PAGE_LIMIT,
) -> dict[str, Any]:
    page = await service.page(
        user.user_id, conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit
    )
    return {"messages": [m.public() for m in page.messages], "has_more": page.has_more}


@router.post(
    "/{conversation_id}/messages",
    status_code=201,
    response_model=MessageOut,
    summary="Post a message",
    description="Same ordering and idempotency as a WebSocket send. A retry with the "
    f"same `client_id` answers 201 with the original message and `{REPLAYED_HEADER}: true`.",
    responses=problem_responses(400, 401, 404, 413, 422, 429, 503),
)
async def post_message(
    user: CurrentUser,
    service: MessagesDep,
    conversation_id: ConversationId,
    body: MessageCreate,
    response: Response,
) -> dict[str, Any]:
    message = await service.post(
        user.user_id, conversation_id, body=body.body, client_id=body.client_id
    )
    if message.duplicate:
        response.headers[REPLAYED_HEADER] = "true"
    return message.public()


@router.post(
    "/{conversation_id}/read",
    status_code=204,
    response_class=Response,
    summary="Move my read marker forward",
    responses=problem_responses(400, 401, 404, 413, 422, 429),
    dependencies=[LimitedWrite],
)
async def mark_read(
    user: CurrentUser,
    service: ReadMarkersDep,
    conversation_id: ConversationId,
    body: ReadMarkerUpdate,
) -> Response:
    await service.mark_read(user.user_id, conversation_id, body.seq)
    return Response(status_code=204)
