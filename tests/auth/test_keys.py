"""Signing keys: the JWKS, tokens the shared verifier accepts, rotation, key files."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt
from redis.asyncio import Redis

from chat_auth.keyring import Keyring, generate_key_file
from chat_shared.tokens import JwksKeySource, TokenVerifier


async def test_jwks_publishes_public_keys_only(api: Any) -> None:
    response = await api.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    assert {"kty", "crv", "x", "y", "kid", "alg", "use"} == set(key)
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in key  # the private scalar never leaves the service


async def test_access_tokens_verify_through_the_jwks(api: Any, redis: Redis) -> None:
    profile, pair = await api.user("alice")
    # What every other service does: fetch the JWKS over HTTP and verify.
    verifier = TokenVerifier(
        JwksKeySource("/.well-known/jwks.json", api.http),
        issuer=api.settings.jwt_issuer,
        audience=api.settings.jwt_audience,
    )
    principal = await verifier.verify(pair["access_token"])
    assert principal.user_id == profile["id"]
    assert principal.username == "alice"
    assert principal.expires_at - principal.issued_at == api.settings.access_token_ttl_seconds
    header = jwt.get_unverified_header(pair["access_token"])
    claims = jwt.get_unverified_claims(pair["access_token"])
    assert header["alg"] == "ES256"
    assert header["kid"] == (await api.http.get("/.well-known/jwks.json")).json()["keys"][0]["kid"]
    assert set(claims) == {"sub", "username", "iss", "aud", "iat", "exp", "jti", "typ", "tv", "sid"}
    assert (claims["typ"], claims["tv"]) == ("access", 0)


def _write_key(folder: Path, name: str) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(pem)


async def test_rotation_newest_key_signs_and_old_keys_still_verify(
    open_client: Any, data_dir: Path
) -> None:
    keys_dir = data_dir / "mounted-keys"
    _write_key(keys_dir, "2024-01-old.pem")
    async with open_client(signing_keys_dir=keys_dir, signing_keys_generate=False) as api:
        _, old_pair = await api.user("bob")
    _write_key(keys_dir, "2025-06-new.pem")
    async with open_client(signing_keys_dir=keys_dir, signing_keys_generate=False) as api:
        jwks = (await api.http.get("/.well-known/jwks.json")).json()["keys"]
        assert len(jwks) == 2
        new_pair = await api.login("bob")
        assert jwt.get_unverified_header(new_pair["access_token"])["kid"] == jwks[1]["kid"]
        for pair in (old_pair, new_pair):
            me = await api.http.get("/v1/users/me", headers=api.bearer(pair))
            assert me.status_code == 200


def test_a_generated_key_is_private_to_its_owner(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "keys")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyring = Keyring.load(tmp_path / "keys", generate=False)
    assert keyring.signing_key.alg == "ES256"
    assert "private" not in repr(keyring.signing_key).lower()


def test_keys_are_generated_once_and_reused(tmp_path: Path) -> None:
    first = Keyring.load(tmp_path / "keys", generate=True)
    second = Keyring.load(tmp_path / "keys", generate=True)
    assert first.signing_key.kid == second.signing_key.kid
    assert len(list((tmp_path / "keys").iterdir())) == 1


def test_missing_keys_fail_loudly_when_generation_is_off(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no signing keys"):
        Keyring.load(tmp_path / "empty", generate=False)


def test_weak_or_foreign_keys_are_refused(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "p384.pem").write_bytes(pem)
    with pytest.raises(ValueError, match="P-256"):
        Keyring.load(tmp_path, generate=False)
