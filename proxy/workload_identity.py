"""This sidecar's workload identity: getting it (from the local CA's folder or from
a Sentry, always in a child process), holding it, renewing it at half its lifetime
and handing out TLS credentials made from the current one.

- The internal server's listening context picks the current certificate for every
  new handshake (``sni_callback``, which OpenSSL calls for every ClientHello, with
  or without SNI, sets the connection's context): connections already open keep
  theirs.
- Clients get a new ``PeerSecurity`` through ``on_renewed``; the internal client
  dials new connections with it and lets the old ones drain.
- ``problem()`` says why ``/v1.0/healthz`` must fail: renewal has kept failing until
  three quarters of the lifetime, or the certificate has expired (certs.renewal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from certs.errors import CertError
from certs.identity import WorkloadIdentity
from certs.issue import issue_in_child
from certs.renewal import CertificateHealth, Lifetime, next_attempt
from certs.spiffe import SpiffeId
from certs.tls import (
    channel_credentials,
    channel_options_for_peer,
    client_ssl_context,
    server_ssl_context,
)
from proxy.config.settings import SidecarSettings
from proxy.core.errors import TetherError
from proxy.hop.internal_client import PeerSecurity

log = logging.getLogger("tether.identity")

# Gets a fresh identity; ``starting`` is True for the first one (Sentry: more tries).
Fetch = Callable[[bool], Awaitable[WorkloadIdentity]]


class IdentityUnavailable(TetherError):
    """The first workload certificate could not be had (CA folder or Sentry)."""


def fetcher(settings: SidecarSettings) -> tuple[Fetch, str]:
    """How this sidecar gets certificates, and where from (for the logs)."""
    spiffe = SpiffeId(settings.trust_domain, settings.namespace, settings.app_id)
    sentry = settings.sentry
    if sentry is not None:
        from proxy.sentry_client import RENEWAL_ATTEMPTS, START_ATTEMPTS, request_in_child

        async def from_sentry(starting: bool) -> WorkloadIdentity:
            attempts = START_ATTEMPTS if starting else RENEWAL_ATTEMPTS
            return await request_in_child(sentry, spiffe, attempts)

        return from_sentry, f"Sentry at {sentry.address}"
    ttl = timedelta(seconds=settings.workload_cert_ttl)
    skew = timedelta(seconds=settings.allowed_clock_skew)

    async def from_folder(starting: bool) -> WorkloadIdentity:
        return await issue_in_child(settings.certs_dir, spiffe, ttl, skew)

    return from_folder, f"the local CA in {settings.certs_dir}"


def peer_security(identity: WorkloadIdentity, trust_domains: frozenset[str]) -> PeerSecurity:
    """Client credentials for both hop clients; each pins the callee's SPIFFE ID (and the
    lean client checks it is in one of ``trust_domains``)."""
    credentials = channel_credentials(identity)

    def factory(peer: SpiffeId) -> tuple[grpc.ChannelCredentials, list[tuple[str, str]]]:
        return credentials, channel_options_for_peer(peer)

    return PeerSecurity(factory, client_ssl_context(identity), trust_domains)


class WorkloadCredentials:
    def __init__(
        self,
        fetch: Fetch,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        trust_domains: frozenset[str],
    ) -> None:
        self._fetch = fetch
        self._trust_domains = trust_domains
        self._source = source
        self._clock = clock
        self._identity: WorkloadIdentity | None = None
        self._server: ssl.SSLContext | None = None
        self._listening: ssl.SSLContext | None = None
        self._security: PeerSecurity | None = None
        self._failures = 0
        self._last_error = ""
        self._reported: CertificateHealth = CertificateHealth.GOOD
        self._renewer: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[PeerSecurity], None]] = []

    async def start(self) -> None:
        """Get the first certificate; IdentityUnavailable (one line) when there is none."""
        try:
            identity = await self._fetch(True)
        except CertError as exc:
            raise IdentityUnavailable(str(exc)) from exc
        self._install(identity)
        log.info(
            "workload certificate for %s from %s, valid until %s",
            identity.spiffe_id,
            self._source,
            identity.not_after.isoformat(timespec="seconds"),
        )

    def _install(self, identity: WorkloadIdentity) -> None:
        self._identity = identity
        self._server = server_ssl_context(identity)
        self._security = peer_security(identity, self._trust_domains)

    @property
    def identity(self) -> WorkloadIdentity:
        assert self._identity is not None, "start() first"
        return self._identity

    @property
    def security(self) -> PeerSecurity:
        assert self._security is not None, "start() first"
        return self._security

    def listening_context(self) -> ssl.SSLContext:
        """The internal server's context: each handshake switches to the current one."""
        if self._listening is None:
            self._listening = server_ssl_context(self.identity)
            self._listening.sni_callback = self._choose
        return self._listening

    def _choose(self, connection: Any, _server_name: str | None, _context: Any) -> None:
        # OpenSSL takes the certificate, key and client-CA store of the context set here.
        connection.context = self._server

    def on_renewed(self, listener: Callable[[PeerSecurity], None]) -> None:
        self._listeners.append(listener)

    def problem(self) -> str | None:
        """None while the certificate may be trusted to work; else what is wrong."""
        if self._identity is None:
            return None  # not started: readiness reports that
        health = self._lifetime().health(self._clock(), self._failures)
        if health is CertificateHealth.GOOD:
            return None
        return f"workload certificate {health.value}"

    def _lifetime(self) -> Lifetime:
        identity = self.identity
        return Lifetime(identity.not_before, identity.not_after)

    def start_renewing(self) -> None:
        self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            now = self._clock()
            delay = next_attempt(self._lifetime(), self._failures, now)
            change = self._lifetime().next_change(now)
            if self._failures and change is not None and change < delay:
                # Failing: say so the moment the certificate's health changes.
                await asyncio.sleep(change)
                self._report_health()
                continue
            await asyncio.sleep(delay)
            started = asyncio.get_running_loop().time()
            try:
                identity = await self._fetch(False)
            except CertError as exc:
                self._failures += 1
                self._last_error = str(exc)
                log.warning(
                    "renewing the workload certificate from %s failed (%d in a row): %s",
                    self._source,
                    self._failures,
                    exc,
                )
                self._report_health()
                continue
            self._install(identity)
            self._failures = 0
            log.info(
                "workload certificate renewed from %s in %.2fs, valid until %s",
                self._source,
                asyncio.get_running_loop().time() - started,
                identity.not_after.isoformat(timespec="seconds"),
            )
            self._report_health()
            assert self._security is not None
            for listener in self._listeners:
                listener(self._security)

    def _report_health(self) -> None:
        """Log each change of the certificate's health once, saying why."""
        health = self._lifetime().health(self._clock(), self._failures)
        if health is self._reported:
            return
        self._reported = health
        if health is CertificateHealth.GOOD:
            log.info("workload certificate healthy again: /v1.0/healthz can report ready")
            return
        log.error(
            "workload certificate %s: it expires at %s and renewal from %s has failed %d "
            "times (last: %s); /v1.0/healthz reports unhealthy",
            health.value,
            self.identity.not_after.isoformat(timespec="seconds"),
            self._source,
            self._failures,
            self._last_error,
        )

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
