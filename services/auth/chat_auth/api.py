"""HTTP routes of the auth service: thin functions over Sessions and Accounts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.security import OAuth2PasswordBearer
from prometheus_client import Counter
from starlette.responses import Response

from chat_auth.accounts import MAX_LOOKUP_IDS, Accounts
from chat_auth.directory import Directory
from chat_auth.keyring import Keyring
from chat_auth.pairs import TokenPair
from chat_auth.rules import EMAIL_MAX, PASSWORD_MAX, USERNAME_MAX
from chat_auth.schemas import (
    Jwks,
    LoginRequest,
    OwnUser,
    ProfilePatch,
    PublicUser,
    RefreshRequest,
    SignupRequest,
    TokenPairOut,
    UserList,
)
from chat_auth.sessions import Sessions
from chat_shared.errors import ChatError, Invalid, NotFound
from chat_shared.ids import is_id
from chat_shared.tokens import Principal
from chat_shared.web.auth import principal_from_token
from chat_shared.web.problems import problem_responses

# The security scheme of the auth routes: /docs gets a working Authorize button that
# signs in through the password form below.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/token",
    auto_error=False,
    description="Access token from /v1/auth/login or the Authorize button.",
)


async def current_principal(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    return await principal_from_token(request, token)


CurrentUser = Annotated[Principal, Depends(current_principal)]


def get_sessions(request: Request) -> Sessions:
    sessions: Sessions = request.state.sessions
    return sessions


def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.state.accounts
    return accounts


def get_directory(request: Request) -> Directory:
    directory: Directory = request.state.directory
    return directory


def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.state.keyring
    return keyring


SessionsDep = Annotated[Sessions, Depends(get_sessions)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
DirectoryDep = Annotated[Directory, Depends(get_directory)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    # 400 is the framework's answer to a body that is not even text (bad UTF-8); 413
    # comes from the body-size cap in front of every route.
    out = problem_responses(*statuses)
    if 429 in out:
        out[429]["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        }
    return out


def _pair(pair: TokenPair) -> TokenPairOut:
    return TokenPairOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


def build_router(logins: Counter) -> APIRouter:
    router = APIRouter()

    async def login_counted(
        sessions: Sessions, login: str, password: str, address: str
    ) -> TokenPairOut:
        try:
            pair = await sessions.login(login, password, address=address)
        except ChatError as exc:
            logins.labels(exc.code).inc()
            raise
        logins.labels("ok").inc()
        return _pair(pair)

    @router.post(
        "/v1/auth/signup",
        tags=["auth"],
        status_code=201,
        response_model=OwnUser,
        summary="Create an account",
        responses=_responses(400, 409, 413, 422, 429, 503),
    )
    async def signup(body: SignupRequest, request: Request, accounts: AccountsDep) -> OwnUser:
        user = await accounts.signup(
            username=body.username,
            email=body.email,
            password=body.password,
            display_name=body.display_name,
            address=client_address(request),
        )
        return OwnUser.of(user)

    @router.post(
        "/v1/auth/login",
        tags=["auth"],
        response_model=TokenPairOut,
        summary="Sign in with a username or email and a password",
        responses=_responses(400, 401, 413, 422, 429, 503),
    )
    async def login(body: LoginRequest, request: Request, sessions: SessionsDep) -> TokenPairOut:
        return await login_counted(sessions, body.login, body.password, client_address(request))

    @router.post(
        "/v1/auth/token",
        tags=["auth"],
        response_model=TokenPairOut,
        summary="Sign in with the OAuth2 password form (the Authorize button of /docs)",
        responses=_responses(400, 401, 413, 422, 429, 503),
    )
    async def token(
        request: Request,
        sessions: SessionsDep,
        username: Annotated[
            str, Form(min_length=1, max_length=EMAIL_MAX, description="Username or email.")
        ],
        password: Annotated[str, Form(min_length=1, max_length=PASSWORD_MAX)],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form(max_length=1024)] = "",
    ) -> TokenPairOut:
        return await login_counted(sessions, username, password, client_address(request))

    @router.post(
        "/v1/auth/refresh",
        tags=["auth"],
        response_model=TokenPairOut,
        summary="Trade a refresh token for a new pair (the old one stops working)",
        responses=_responses(400, 401, 413, 422),
    )
    async def refresh(body: RefreshRequest, sessions: SessionsDep) -> TokenPairOut:
        return _pair(await sessions.refresh(body.refresh_token))

    @router.post(
        "/v1/auth/logout",
        tags=["auth"],
        status_code=204,
        response_class=Response,
        summary="Revoke a refresh token's family",
        responses=_responses(400, 413, 422),
    )
    async def logout(body: RefreshRequest, sessions: SessionsDep) -> Response:
        await sessions.logout(body.refresh_token)
        return Response(status_code=204)

    @router.get(
        "/v1/users/me",
        tags=["users"],
        response_model=OwnUser,
        summary="Own profile",
        responses=_responses(401),
    )
    async def get_me(principal: CurrentUser, accounts: AccountsDep) -> OwnUser:
        return OwnUser.of(await accounts.me(principal.user_id))

    @router.patch(
        "/v1/users/me",
        tags=["users"],
        response_model=OwnUser,
        summary="Change display name, email or password (a password change revokes every session)",
        responses=_responses(400, 401, 403, 409, 413, 422, 429, 503),
    )
    async def patch_me(
        body: ProfilePatch, request: Request, principal: CurrentUser, accounts: AccountsDep
    ) -> OwnUser:
        user = await accounts.update(
            principal.user_id,
            address=client_address(request),
            display_name=body.display_name,
            email=body.email,
            password=body.password,
            current_password=body.current_password,
        )
        return OwnUser.of(user)

    @router.delete(
        "/v1/users/me",
        tags=["users"],
        status_code=204,
        response_class=Response,
        summary="Delete the account and revoke its tokens",
        responses=_responses(401),
    )
    async def delete_me(principal: CurrentUser, accounts: AccountsDep) -> Response:
        await accounts.delete(principal.user_id)
        return Response(status_code=204)

    @router.get(
        "/v1/users",
        tags=["users"],
        response_model=UserList,
        summary="Find users by username prefix (q) or look up ids",
        description=(
            "A prefix of fewer than 3 characters finds only the user with exactly that "
            "username. Searches are rate-limited per caller (429)."
        ),
        responses=_responses(401, 422, 429),
    )
    async def list_users(
        principal: CurrentUser,
        directory: DirectoryDep,
        q: Annotated[
            str | None, Query(min_length=1, max_length=USERNAME_MAX, description="Username prefix.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        after: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=USERNAME_MAX,
                description="A search's next_cursor: the page after it.",
            ),
        ] = None,
        ids: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=MAX_LOOKUP_IDS * 32,
                description=f"Comma-separated user ids (at most {MAX_LOOKUP_IDS}).",
            ),
        ] = None,
    ) -> UserList:
        if ids is not None and q is not None:
            raise Invalid("Give either q or ids, not both.")
        if ids is not None:
            wanted = [i.strip() for i in ids.split(",") if i.strip()]
            found = await directory.lookup(principal.user_id, wanted)
        elif q is not None:
            found = await directory.search(principal.user_id, q, limit, after)
        else:
            raise Invalid("Give q (a username prefix) or ids.")
        full_page = q is not None and len(found) == limit
        return UserList(
            users=[PublicUser.of(f.user, shows_last_active=f.shows_last_active) for f in found],
            next_cursor=found[-1].user.username if full_page else None,
        )

    @router.get(
        "/v1/users/{user_id}",
        tags=["users"],
        response_model=PublicUser,
        summary="Someone's public profile",
        responses=_responses(401, 404),
    )
    async def get_user(user_id: str, principal: CurrentUser, directory: DirectoryDep) -> PublicUser:
        if not is_id(user_id):
            raise NotFound("No such user.")
        found = await directory.profile(principal.user_id, user_id)
        return PublicUser.of(found.user, shows_last_active=found.shows_last_active)

    @router.get(
        "/.well-known/jwks.json",
        tags=["keys"],
        response_model=Jwks,
        summary="Public keys that verify access tokens",
    )
    async def jwks(request: Request) -> dict[str, Any]:
        return get_keyring(request).jwks()

    return router
