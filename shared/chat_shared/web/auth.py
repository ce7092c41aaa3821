"""FastAPI dependency that yields the caller's verified principal.

The verifier lives in the app's lifespan state (``request.state.token_verifier``), so
there is no module-level global and tests can build as many apps as they like.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chat_shared.tokens import Principal, TokenError, TokenVerifier

bearer_scheme = HTTPBearer(auto_error=False, description="Access token from /v1/auth/login")


async def principal_from_token(request: Request, token: str | None) -> Principal:
    """Verify a bearer token with the app's verifier; for any security scheme."""
    verifier: TokenVerifier = request.state.token_verifier
    if token is None:
        raise TokenError("Missing access token.")
    return await verifier.verify(token)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    return await principal_from_token(request, credentials.credentials if credentials else None)


CurrentUser = Annotated[Principal, Depends(current_principal)]
