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


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    verifier: TokenVerifier = request.state.token_verifier
    if credentials is None:
        raise TokenError("Missing access token.")
    return await verifier.verify(credentials.credentials)


CurrentUser = Annotated[Principal, Depends(current_principal)]
