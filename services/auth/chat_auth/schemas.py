"""Request and response bodies. Requests are strict: unknown fields are refused and
every string has a length limit (the limits are the domain's, from chat_auth.rules)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chat_auth.rules import (
    DISPLAY_NAME_MAX,
    EMAIL_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    USERNAME_MAX,
    USERNAME_MIN,
    USERNAME_PATTERN,
    check_display_name,
    check_email,
)
from chat_shared.errors import Invalid
from chat_shared.ports.auth import UserRecord

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$"

Username = Annotated[
    str,
    Field(
        min_length=USERNAME_MIN,
        max_length=USERNAME_MAX,
        pattern=USERNAME_PATTERN,
        description="3-32 of a-z, 0-9, '_', '.', '-' (upper case is folded to lower case).",
        examples=["alice"],
    ),
]
Email = Annotated[
    str,
    Field(
        min_length=3,
        max_length=EMAIL_MAX,
        pattern=EMAIL_PATTERN,
        examples=["alice@example.com"],
    ),
]
NewPassword = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        description="8-128 characters; no composition rules.",
        examples=["correct horse battery"],
    ),
]
AnyPassword = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX)]
DisplayName = Annotated[str, Field(min_length=1, max_length=DISPLAY_NAME_MAX, examples=["Alice"])]


class StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _domain_rule(check: Callable[[str], str], value: str | None) -> str | None:
    # The same rule the domain applies, reported as a field error (422 with its loc).
    if value is None:
        return None
    try:
        return check(value)
    except Invalid as exc:
        raise ValueError(exc.detail) from None


class SignupRequest(StrictRequest):
    username: Username
    email: Email
    password: NewPassword
    display_name: DisplayName | None = Field(None, description="Defaults to the username.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _domain_rule(check_email, value) or value

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        return _domain_rule(check_display_name, value)


class LoginRequest(StrictRequest):
    login: str = Field(
        min_length=1, max_length=EMAIL_MAX, description="Username or email.", examples=["alice"]
    )
    password: AnyPassword


class RefreshRequest(StrictRequest):
    refresh_token: str = Field(min_length=1, max_length=512)


class ProfilePatch(StrictRequest):
    display_name: DisplayName | None = None
    email: Email | None = None
    password: NewPassword | None = Field(None, description="Needs current_password.")
    current_password: AnyPassword | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _domain_rule(check_email, value)

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        return _domain_rule(check_display_name, value)


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name
    expires_in: int = Field(description="Seconds until the access token expires.")


class PublicUser(BaseModel):
    id: str
    username: str
    display_name: str
    created_at: datetime
    last_active_at: datetime | None = Field(
        description=(
            "When the user was last online: their last device went offline then (UTC). "
            "Null until that first happens, and for users who share no conversation "
            "with the caller (the same rule as presence)."
        )
    )

    @classmethod
    def of(cls, user: UserRecord, *, shows_last_active: bool = True) -> PublicUser:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            created_at=user.created_at,
            last_active_at=user.last_active_at if shows_last_active else None,
        )


class OwnUser(PublicUser):
    email: str

    @classmethod
    def of(cls, user: UserRecord, *, shows_last_active: bool = True) -> OwnUser:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            created_at=user.created_at,
            last_active_at=user.last_active_at,
            email=user.email,
        )


class UserList(BaseModel):
    users: list[PublicUser]
    next_cursor: str | None = Field(
        None,
        description="With a search: pass it as `after` for the next page; null on the last.",
    )


class PublicJwk(BaseModel):
    model_config = ConfigDict(extra="allow")

    kty: Literal["EC", "RSA"]
    kid: str
    alg: Literal["ES256", "RS256"]
    use: Literal["sig"]


class Jwks(BaseModel):
    keys: list[PublicJwk]
