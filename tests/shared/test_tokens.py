"""The verifier refuses every token that is not a valid access token of ours."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx2
import pytest
from jose import jwt
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from chat_shared.revocation import RedisRevocations
from chat_shared.tokens import (
    JwksKeySource,
    StaticKeySource,
    TokenError,
    TokenVerifier,
    bearer_from_header,
    bearer_from_subprotocols,
)
from tests.support.tokens import TokenMinter


def make_verifier(minter: TokenMinter, **kwargs: object) -> TokenVerifier:
    return TokenVerifier(minter.key_source(), issuer="chat-auth", audience="chat", **kwargs)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_valid_token_yields_principal(minter: TokenMinter) -> None:
    principal = await make_verifier(minter).verify(minter.token("u1", "alice"))
    assert principal.user_id == "u1"
    assert principal.username == "alice"


async def test_expired_token_is_refused(minter: TokenMinter) -> None:
    past = int(time.time()) - 3600
    token = minter.token("u1", iat=past - 900, exp=past)
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(token)


async def test_missing_exp_is_refused(minter: TokenMinter) -> None:
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(minter.token("u1", exp=None))


async def test_not_yet_valid_token_is_refused(minter: TokenMinter) -> None:
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(minter.token("u1", nbf=int(time.time()) + 600))


async def test_wrong_audience_is_refused(minter: TokenMinter) -> None:
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(minter.token("u1", aud="someone-else"))


async def test_wrong_issuer_is_refused(minter: TokenMinter) -> None:
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(minter.token("u1", iss="https://evil.example"))


async def test_refresh_or_other_token_types_are_refused(minter: TokenMinter) -> None:
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(minter.token("u1", typ="refresh"))


async def test_alg_none_is_refused(minter: TokenMinter) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": minter.kid}).encode())
    payload = b64(json.dumps(minter.claims("u1")).encode())
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(f"{header}.{payload}.")


async def test_hs256_signed_with_public_key_is_refused(minter: TokenMinter) -> None:
    """The algorithm-confusion attack: the public key used as an HMAC secret."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": minter.kid}).encode())
    payload = b64(json.dumps(minter.claims("u1")).encode())
    mac = hmac.new(minter.public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64(mac)}"
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(forged)


async def test_tampered_payload_is_refused(minter: TokenMinter) -> None:
    header, _, signature = minter.token("u1").split(".")
    payload = b64(json.dumps(minter.claims("admin")).encode())
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(f"{header}.{payload}.{signature}")


async def test_token_from_another_key_with_our_kid_is_refused(minter: TokenMinter) -> None:
    impostor = TokenMinter(kid=minter.kid)
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(impostor.token("u1"))


async def test_unknown_kid_is_refused_after_one_refresh(minter: TokenMinter) -> None:
    calls = []

    class CountingSource(StaticKeySource):
        async def keys(self, *, refresh: bool = False):  # type: ignore[no-untyped-def]
            calls.append(refresh)
            return await super().keys(refresh=refresh)

    verifier = TokenVerifier(
        CountingSource({minter.kid: minter.public_jwk()}),
        issuer="chat-auth",
        audience="chat",
        min_refresh_seconds=60,
    )
    stranger = TokenMinter()
    for _ in range(3):
        with pytest.raises(TokenError):
            await verifier.verify(stranger.token("u1"))
    assert calls.count(True) == 1, "unknown kid refreshes the JWKS at most once per interval"


async def test_rotation_new_kid_is_found_by_refresh(minter: TokenMinter) -> None:
    rotated = TokenMinter()
    published = {minter.kid: minter.public_jwk()}

    class RotatingSource:
        async def keys(self, *, refresh: bool = False):  # type: ignore[no-untyped-def]
            return dict(published)

    verifier = TokenVerifier(RotatingSource(), issuer="chat-auth", audience="chat")
    published[rotated.kid] = rotated.public_jwk()
    principal = await verifier.verify(rotated.token("u2"))
    assert principal.user_id == "u2"


async def test_jku_and_embedded_jwk_headers_are_ignored(minter: TokenMinter) -> None:
    attacker = TokenMinter()
    token = jwt.encode(
        attacker.claims("u1"),
        attacker.private_pem.decode(),
        algorithm="ES256",
        headers={
            "kid": minter.kid,
            "jku": "http://evil.example/jwks",
            "jwk": attacker.public_jwk(),
        },
    )
    with pytest.raises(TokenError):
        await make_verifier(minter).verify(token)


async def test_revoked_token_version_is_refused(minter: TokenMinter, redis: Redis) -> None:
    revocations = RedisRevocations(redis)
    await revocations.revoke("u1", 3)
    verifier = make_verifier(minter, revocations=revocations)
    with pytest.raises(TokenError):
        await verifier.verify(minter.token("u1", tv=2))
    assert (await verifier.verify(minter.token("u1", tv=3))).token_version == 3
    assert (await verifier.verify(minter.token("u2", tv=0))).user_id == "u2"


async def test_a_revoked_session_refuses_its_tokens_only(minter: TokenMinter, redis: Redis) -> None:
    revocations = RedisRevocations(redis)
    verifier = make_verifier(minter, revocations=revocations)
    phone = minter.token("u1", sid="01SESSIONPHONE000000000000")
    laptop = minter.token("u1", sid="01SESSIONLAPTOP00000000000")
    assert (await verifier.verify(phone)).session_id == "01SESSIONPHONE000000000000"
    await revocations.revoke_session("01SESSIONPHONE000000000000")
    with pytest.raises(TokenError, match="revoked"):
        await verifier.verify(phone)
    assert (await verifier.verify(laptop)).user_id == "u1"
    with pytest.raises(TokenError):
        await verifier.verify(minter.token("u1", sid=12))  # not a session id


async def test_garbage_is_refused(minter: TokenMinter) -> None:
    for junk in ["", "abc", "a.b.c", "x" * 10000, "..", "\u00e9.\u00e9.\u00e9"]:
        with pytest.raises(TokenError):
            await make_verifier(minter).verify(junk)


def test_bearer_extraction() -> None:
    assert bearer_from_header("Bearer abc") == "abc"
    assert bearer_from_header("bearer  abc ") == "abc"
    assert bearer_from_header("Basic abc") is None
    assert bearer_from_header(None) is None
    assert bearer_from_subprotocols(["chat.v1", "bearer.tok"]) == "tok"
    assert bearer_from_subprotocols(["bearer.tok"]) is None
    assert bearer_from_subprotocols(["chat.v1"]) is None


async def test_a_key_removed_from_the_jwks_stops_being_trusted_within_the_max_age(
    minter: TokenMinter,
) -> None:
    """The JWKS is served over HTTP by a small app, as auth serves it."""
    published: dict[str, list[dict[str, object]]] = {"keys": [minter.public_jwk()]}
    jwks_app = Starlette(routes=[Route("/jwks", lambda _: JSONResponse(published))])
    now = [1000.0]
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=jwks_app), base_url="http://auth.test"
    ) as http:
        source = JwksKeySource("/jwks", http, max_age_seconds=300, clock=lambda: now[0])
        verifier = TokenVerifier(source, issuer="chat-auth", audience="chat", clock=lambda: now[0])
        token = minter.token("u1")
        assert (await verifier.verify(token)).user_id == "u1"
        published["keys"] = []  # the key is withdrawn (rotated out, or leaked)
        now[0] += 299
        assert (await verifier.verify(token)).user_id == "u1"  # the cached copy, still
        now[0] += 2
        with pytest.raises(TokenError):
            await verifier.verify(token)
