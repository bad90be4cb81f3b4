"""The renewal shell (proxy.workload_identity) with a fake certificate source and an
injected clock: new handshakes get the renewed certificate while open connections
keep going, failures are retried, and the health verdict follows the clock."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs.authority import create_authority, load_issuer, write_authority
from certs.errors import CertError
from certs.identity import WorkloadIdentity
from certs.spiffe import SpiffeId
from certs.tls import client_ssl_context
from certs.workload import issue_workload_identity
from proxy.hop.internal_client import PeerSecurity
from proxy.workload_identity import IdentityUnavailable, WorkloadCredentials

ORDERS = SpiffeId("public", "default", "orders")
NOW = datetime.now(UTC)


class Source:
    """Certificates on demand, failing while ``failing`` says so."""

    def __init__(self, ca_dir: Path, failing: int = 0) -> None:
        self._issuer = load_issuer(ca_dir, NOW)
        self.failing = failing
        self.calls = 0

    async def __call__(self, starting: bool) -> WorkloadIdentity:
        self.calls += 1
        if self.failing:
            self.failing -= 1
            raise CertError("the CA is away")
        return issue_workload_identity(self._issuer, ORDERS, datetime.now(UTC))


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    write_authority(tmp_path, create_authority("public", NOW))
    return tmp_path


def client(ca_dir: Path) -> ssl.SSLContext:
    issuer = load_issuer(ca_dir, NOW)
    return client_ssl_context(
        issue_workload_identity(issuer, SpiffeId("public", "default", "probe"), NOW)
    )


async def serial(port: int, context: ssl.SSLContext) -> tuple[str, asyncio.StreamWriter]:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=ORDERS.peer_name()
    )
    return writer.get_extra_info("peercert")["serialNumber"], writer


def test_new_handshakes_get_the_renewed_certificate_open_ones_keep_theirs(ca_dir: Path) -> None:
    async def scenario() -> None:
        clock = [NOW]
        credentials = WorkloadCredentials(
            Source(ca_dir), "a test CA", lambda: clock[0], trust_domains=frozenset({"public"})
        )
        await credentials.start()
        renewed: list[PeerSecurity] = []

        def on_renewed(security: PeerSecurity) -> None:
            renewed.append(security)
            clock[0] = NOW  # the new certificate is fresh: no renewal due

        credentials.on_renewed(on_renewed)

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(100):
                writer.write(data)

        server = await asyncio.start_server(
            echo, "127.0.0.1", 0, ssl=credentials.listening_context()
        )
        port = server.sockets[0].getsockname()[1]
        context = client(ca_dir)
        first, old = await serial(port, context)
        clock[0] = credentials.identity.not_after - timedelta(hours=1)  # past half-life
        credentials.start_renewing()
        async with asyncio.timeout(30):
            while not renewed:
                await asyncio.sleep(0.05)
        second, new = await serial(port, context)
        assert second != first
        assert renewed == [credentials.security]
        old.write(b"still here")  # the connection made before renewal goes on
        reader = old.transport.get_protocol()._stream_reader  # type: ignore[attr-defined]
        assert await reader.read(100) == b"still here"
        for writer in (old, new):
            writer.close()
            await writer.wait_closed()
        await credentials.close()
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())


def test_failures_are_retried_and_the_health_follows_the_clock(ca_dir: Path) -> None:
    async def scenario() -> None:
        source = Source(ca_dir)
        clock = [NOW]
        credentials = WorkloadCredentials(
            source, "a test CA", lambda: clock[0], trust_domains=frozenset({"public"})
        )
        await credentials.start()
        identity = credentials.identity
        life = identity.not_after - identity.not_before
        assert credentials.problem() is None
        clock[0] = identity.not_before + life * 0.74
        assert credentials.problem() is None
        clock[0] = identity.not_before + life * 0.76
        assert credentials.problem() is None  # no attempt has failed: not a fault yet
        credentials._failures = 1  # as after a failed attempt (the loop below does it for real)
        assert credentials.problem() == "workload certificate renewal failing"
        credentials._failures = 0
        clock[0] = identity.not_after
        assert credentials.problem() == "workload certificate expired"
        # Three failures (retried after 1 s, 2 s), then a renewal: healthy again.
        clock[0] = identity.not_before + life * 0.6
        source.failing = 2
        credentials.on_renewed(lambda _security: clock.__setitem__(0, NOW))
        credentials.start_renewing()
        async with asyncio.timeout(30):
            while credentials.identity is identity:
                await asyncio.sleep(0.05)
        assert source.calls == 4  # the first certificate, two failures, the renewal
        assert credentials.problem() is None
        await credentials.close()

    asyncio.run(scenario())


def test_no_first_certificate_is_one_clear_error(ca_dir: Path) -> None:
    credentials = WorkloadCredentials(
        Source(ca_dir, failing=1), "a test CA", trust_domains=frozenset({"public"})
    )
    with pytest.raises(IdentityUnavailable, match=r"^the CA is away$"):
        asyncio.run(credentials.start())
