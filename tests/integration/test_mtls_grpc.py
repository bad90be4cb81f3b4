"""mTLS between two gRPC endpoints on loopback, with certificates from certs.

The callee's identity is pinned by the caller (channel_options_for_peer) and the
caller's identity is read by the callee (caller_identifier, on tether's
lean gRPC server with ``server_ssl_context``); a wrong identity, a
foreign CA or a missing client certificate must fail the handshake, so the
handler never runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from certs.authority import create_authority, load_issuer, write_authority
from certs.spiffe import SpiffeId
from certs.tls import (
    channel_credentials,
    channel_options_for_peer,
    server_ssl_context,
)
from certs.workload import WorkloadIdentity, issue_workload_identity
from proxy.grpcwire.handlers import unary_unary
from proxy.grpcwire.server import GrpcServer
from proxy.grpcwire.server_call import ServerCall
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.peer_identity import caller_identifier

NOW = datetime.now(UTC)
CALL_TIMEOUT = 5.0
METHOD = "/tether.test.Echo/Call"
ORDERS = SpiffeId("public", "default", "orders")
CHECKOUT = SpiffeId("public", "default", "checkout")
CHECKOUT_CALLER = CallerIdentity("checkout", "default", "public")


@dataclass
class Seen:
    callers: list[CallerIdentity] = field(default_factory=list)


def _identity(directory: Path, spiffe_id: SpiffeId) -> WorkloadIdentity:
    if not (directory / "issuer.key").exists():
        write_authority(directory, create_authority(spiffe_id.trust_domain, NOW))
    return issue_workload_identity(load_issuer(directory, NOW), spiffe_id, NOW)


async def _call(
    server_identity: WorkloadIdentity,
    credentials: grpc.ChannelCredentials,
    options: Sequence[tuple[str, str]],
    seen: Seen,
) -> bytes:
    async def echo(request: bytes, call: ServerCall) -> bytes:
        assert isinstance(call.peer, CallerIdentity)
        seen.callers.append(call.peer)
        return request

    def raw(data: bytes) -> bytes:
        return data

    server = GrpcServer(
        {METHOD: unary_unary(echo, raw, raw)},
        max_message_size=1024 * 1024,
        ssl_context=server_ssl_context(server_identity),
        identify=caller_identifier(frozenset({"public"})),
    )
    port = await server.listen("127.0.0.1", 0)
    try:
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}", credentials, options=list(options)
        ) as channel:
            response: bytes = await channel.unary_unary(METHOD)(b"ping", timeout=CALL_TIMEOUT)
            return response
    finally:
        await server.stop(0)


def _run(
    server_identity: WorkloadIdentity,
    credentials: grpc.ChannelCredentials,
    options: Sequence[tuple[str, str]],
    seen: Seen,
) -> bytes:
    return asyncio.run(_call(server_identity, credentials, options, seen))


def test_same_ca_and_expected_identity_succeeds(tmp_path: Path) -> None:
    server = _identity(tmp_path / "ca", ORDERS)
    client = _identity(tmp_path / "ca", CHECKOUT)
    seen = Seen()
    response = _run(server, channel_credentials(client), channel_options_for_peer(ORDERS), seen)
    assert response == b"ping"
    assert seen.callers == [CHECKOUT_CALLER]


def test_expected_identity_in_another_trust_domain_still_matches(tmp_path: Path) -> None:
    # grpcio pins namespace and app ID only (a DNS name): it cannot see the trust domain.
    server = _identity(tmp_path / "ca", ORDERS)
    client = _identity(tmp_path / "ca", CHECKOUT)
    seen = Seen()
    expected = SpiffeId("example.org", "default", "orders")
    _run(server, channel_credentials(client), channel_options_for_peer(expected), seen)
    assert seen.callers == [CHECKOUT_CALLER]


@pytest.mark.parametrize(
    "expected",
    [SpiffeId("public", "default", "payments"), SpiffeId("public", "other", "orders")],
)
def test_wrong_callee_identity_is_refused(tmp_path: Path, expected: SpiffeId) -> None:
    server = _identity(tmp_path / "ca", ORDERS)
    client = _identity(tmp_path / "ca", CHECKOUT)
    seen = Seen()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _run(server, channel_credentials(client), channel_options_for_peer(expected), seen)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert seen.callers == []


def test_client_from_foreign_ca_is_refused(tmp_path: Path) -> None:
    server = _identity(tmp_path / "ca", ORDERS)
    foreign = _identity(tmp_path / "foreign", CHECKOUT)
    # The client trusts the server's root, so only the server's check of the client can fail.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=server.trust_bundle_pem,
        private_key=foreign.private_key_pem,
        certificate_chain=foreign.certificate_chain_pem,
    )
    seen = Seen()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _run(server, credentials, channel_options_for_peer(ORDERS), seen)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert seen.callers == []


def test_server_from_foreign_ca_is_refused(tmp_path: Path) -> None:
    server = _identity(tmp_path / "foreign", ORDERS)
    client = _identity(tmp_path / "ca", CHECKOUT)
    seen = Seen()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _run(server, channel_credentials(client), channel_options_for_peer(ORDERS), seen)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert seen.callers == []


def test_client_without_certificate_is_refused(tmp_path: Path) -> None:
    server = _identity(tmp_path / "ca", ORDERS)
    credentials = grpc.ssl_channel_credentials(root_certificates=server.trust_bundle_pem)
    seen = Seen()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _run(server, credentials, channel_options_for_peer(ORDERS), seen)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert seen.callers == []
