"""Request and response bodies of the history API.

Requests are strict: unknown fields are refused, every string and list is bounded.
The configured limits (group size, message length) are the domain's to check, so the
OpenAPI bounds here are the hard outer ones.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Ids never contain commas: the user directory takes them as a comma-separated list.
UserId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
ClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
MAX_SEQ = 2**53  # the largest integer every JSON client reads exactly

# Outer bound of member lists in a request; the configured group limit is lower.
MAX_MEMBERS_IN_REQUEST = 10_000


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DirectConversationCreate(StrictModel):
    kind: Literal["direct"]
    members: list[UserId] = Field(
        min_length=1,
        max_length=2,
        description="The other user's id (your own id may be listed too).",
    )


class GroupConversationCreate(StrictModel):
    kind: Literal["group"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    members: list[UserId] = Field(
        default_factory=list,
        max_length=MAX_MEMBERS_IN_REQUEST,
        description="Other members; you join as the owner.",
    )


ConversationCreate = Annotated[
    DirectConversationCreate | GroupConversationCreate, Field(discriminator="kind")
]


class MembersAdd(StrictModel):
    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_MEMBERS_IN_REQUEST)


class MessageCreate(StrictModel):
    body: str = Field(
        description="The text, stored and returned verbatim. Empty or whitespace-only "
        "bodies are refused (422), bodies over the configured length too (413).",
    )
    client_id: ClientId = Field(
        description="Chosen by the client per message; a retry with the same id returns "
        "the original message instead of posting again."
    )


class ReadMarkerUpdate(StrictModel):
    seq: int = Field(
        strict=True, ge=0, le=MAX_SEQ, description="Last seq read; the marker never moves back."
    )


class MessageOut(BaseModel):
    id: str = Field(description="Globally unique, sortable by creation time.")
    conversation_id: str
    seq: int = Field(description="1, 2, 3, … within the conversation, no gaps.")
    sender_id: str
    body: str
    client_id: str
    created_at: str = Field(description="RFC 3339, UTC.")


class MessagePageOut(BaseModel):
    messages: list[MessageOut]
    has_more: bool = Field(description="More messages lie beyond this page in its direction.")


class ConversationOut(BaseModel):
    id: str
    kind: Literal["direct", "group"]
    name: str | None
    members: list[str] = Field(description="Member ids: the owner first, then by joining.")
    owner_id: str | None = Field(description="The group's owner; null for direct ones.")
    last_seq: int = Field(description="Seq of the newest message (0 when none).")
    last_message: MessageOut | None
    unread_count: int = Field(description="last_seq minus the caller's read marker.")
    created_at: str
    updated_at: str = Field(description="Time of the latest activity (message or change).")
    read_markers: dict[str, int] | None = Field(
        None,
        description=(
            "Each member's read marker (last seq read), by user id. Only in "
            "GET /v1/conversations/{id}; null in lists."
        ),
    )


class ConversationListOut(BaseModel):
    conversations: list[ConversationOut]
