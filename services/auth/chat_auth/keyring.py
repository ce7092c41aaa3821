"""The signing keyring: PEM private keys in a folder, public halves in the JWKS.

Rotation without downtime: add a key whose file name sorts last (the generated ones
are named by UTC time) and it signs from the next start on, while the older keys
stay published so tokens they signed keep verifying until they expire; then remove
the old file. The folder is either generated on first start (embedded mode) or a
mounted secret (cluster).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt

log = logging.getLogger(__name__)

KEY_SUFFIX = ".pem"
MIN_RSA_BITS = 2048


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64url(value.to_bytes(length, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    public_jwk: dict[str, Any]
    # A jose key object holding the private half: never printed, never serialised.
    _private: Any = field(repr=False)

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        private = serialization.load_pem_private_key(pem, password=None)
        if isinstance(private, ec.EllipticCurvePrivateKey):
            if not isinstance(private.curve, ec.SECP256R1):
                raise ValueError("EC signing keys must use the P-256 curve (ES256)")
            numbers = private.public_key().public_numbers()
            members = {
                "crv": "P-256",
                "kty": "EC",
                "x": _uint(numbers.x, 32),
                "y": _uint(numbers.y, 32),
            }
            alg = "ES256"
        elif isinstance(private, rsa.RSAPrivateKey):
            if private.key_size < MIN_RSA_BITS:
                raise ValueError(f"RSA signing keys need at least {MIN_RSA_BITS} bits")
            rsa_numbers = private.public_key().public_numbers()
            members = {"e": _uint(rsa_numbers.e), "kty": "RSA", "n": _uint(rsa_numbers.n)}
            alg = "RS256"
        else:
            raise ValueError("signing keys must be EC P-256 or RSA")
        kid = thumbprint(members)
        public = {**members, "kid": kid, "alg": alg, "use": "sig"}
        return cls(kid=kid, alg=alg, public_jwk=public, _private=jwk.construct(pem, alg))

    def sign(self, claims: dict[str, Any]) -> str:
        token: str = jwt.encode(
            claims, self._private, algorithm=self.alg, headers={"kid": self.kid}
        )
        return token


def thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint: a stable ``kid`` derived from the public key."""
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


class Keyring:
    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self.keys = keys

    @property
    def signing_key(self) -> SigningKey:
        return self.keys[-1]

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [dict(key.public_jwk) for key in self.keys]}

    def public_keys(self) -> dict[str, dict[str, Any]]:
        return {key.kid: dict(key.public_jwk) for key in self.keys}

    def sign(self, claims: dict[str, Any]) -> str:
        return self.signing_key.sign(claims)

    @classmethod
    def load(cls, folder: Path, *, generate: bool) -> Keyring:
        """Blocking: read every ``*.pem`` of ``folder`` (oldest name first); create one
        key first when there is none and ``generate`` is on."""
        files = _key_files(folder)
        if not files:
            if not generate:
                raise RuntimeError(f"no signing keys (*{KEY_SUFFIX}) in {folder}")
            generate_key_file(folder)
            files = _key_files(folder)
        keys = [SigningKey.from_pem(path.read_bytes()) for path in files]
        log.info("signing keys loaded", extra={"keys": len(keys), "kid": keys[-1].kid})
        return cls(keys)


def _key_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(KEY_SUFFIX) and p.is_file())


def generate_key_file(folder: Path) -> Path:
    """Write a new P-256 private key readable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = folder / f"signing-{stamp}-{os.urandom(3).hex()}{KEY_SUFFIX}"
    # O_EXCL with 0600 from the start: the key is never readable by others, not even
    # briefly between a write and a chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    log.info("generated a signing key", extra={"path": str(path)})
    return path
