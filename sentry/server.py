"""The ``tether sentry`` process: the CA gRPC service over TLS, its healthz and metrics
ports, the renewal of its own certificate, and a clean stop on SIGTERM/SIGINT.

A thin shell: what to sign is decided in ``signing``, tokens in ``tokens``."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
from grpc import aio

from certs.authority import Issuer, load_issuer
from certs.errors import CaInvalid
from certs.spiffe import SpiffeId
from proxy.core.errors import TetherError
from proxy.protos import sentry_pb2, sentry_pb2_grpc
from sentry.http_endpoints import start_http
from sentry.metrics import SentryMetrics
from sentry.serving import (
    RETRY_AFTER,
    ServingCredentials,
    issue_serving_certificate,
    sentry_identity,
)
from sentry.settings import SentrySettings
from sentry.signing import SigningPolicy, SignRefused, sign_request

log = logging.getLogger("dapr.sentry")
STOP_GRACE = 5.0
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SentryStartError(TetherError):
    """Sentry cannot start: a port cannot be bound."""


class CertificateAuthority:
    """``dapr.proto.sentry.v1.CA``: every request counted, every refusal logged and counted."""

    def __init__(
        self, issuer: Issuer, policy: SigningPolicy, metrics: SentryMetrics, clock: Clock
    ) -> None:
        self._issuer = issuer
        self._policy = policy
        self._metrics = metrics
        self._clock = clock

    async def SignCertificate(
        self,
        request: sentry_pb2.SignCertificateRequest,
        context: aio.ServicerContext[object, object],
    ) -> sentry_pb2.SignCertificateResponse:
        self._metrics.request_received()
        try:
            signed = sign_request(request, self._issuer, self._policy, self._clock())
        except SignRefused as refusal:
            self._metrics.refused(refusal.metric_reason)
            # The request's own id and namespace (never its token) say who was refused.
            log.warning(
                "refused a certificate for app ID %r in namespace %r: %s",
                request.id[:100],
                request.namespace[:100],
                refusal.reason,
            )
            await context.abort(grpc.StatusCode[refusal.code], refusal.reason)
            raise  # unreachable: abort raises
        self._metrics.signed()
        log.info(
            "signed a certificate for %s, valid until %s",
            signed.spiffe_id,
            signed.certificate.not_valid_after_utc.isoformat(),
        )
        return signed.response


def health_answer(
    serving: bool, now: datetime, issuer_not_after: datetime
) -> tuple[int, bytes, str]:
    """GET /healthz: 200 while the CA serves and its issuer can still sign, else 503."""
    if not serving:
        return 503, b"not serving yet\n", "text/plain"
    if now >= issuer_not_after:
        return 503, b"the issuer certificate has expired\n", "text/plain"
    return 200, b"ok\n", "text/plain"


async def run_sentry(settings: SentrySettings, clock: Clock = _utc_now) -> None:
    """Serve until SIGTERM or SIGINT. Bad issuer files raise CertError before any port opens."""
    issuer = load_issuer(settings.issuer_dir, clock())
    metrics = SentryMetrics()
    metrics.issuer_expires(issuer.not_after)
    policy = settings.policy
    identity = sentry_identity(settings.trust_domain, settings.namespace)
    credentials = ServingCredentials(
        issue_serving_certificate(issuer, identity, clock(), policy.workload_ttl, policy.clock_skew)
    )
    serving = False

    def healthz() -> tuple[int, bytes, str]:
        return health_answer(serving, clock(), issuer.not_after)

    def scrape() -> tuple[int, bytes, str]:
        return 200, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8"

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    http_servers: list[asyncio.Server] = []
    server = aio.server()
    renewal: asyncio.Task[None] | None = None
    try:
        for name, host, port, routes in (
            ("healthz", settings.healthz_listen_address, settings.healthz_port,
             {"/healthz": healthz}),
            ("metrics", settings.metrics_listen_address, settings.metrics_port,
             {"/metrics": scrape, "/": scrape}),
        ):  # fmt: skip
            try:
                http = await start_http(host, port, routes)
            except OSError as exc:
                raise SentryStartError(f"cannot listen for {name} on {host}:{port}: {exc}") from exc
            http_servers.append(http)
            bound = http.sockets[0].getsockname()[1]
            log.info("%s server listening on %s:%d", name, host, bound)
        authority = CertificateAuthority(issuer, policy, metrics, clock)
        sentry_pb2_grpc.add_CAServicer_to_server(authority, server)
        address = f"{settings.listen_address}:{settings.port}"
        try:
            port = server.add_secure_port(address, credentials.server_credentials())
        except RuntimeError as exc:
            raise SentryStartError(f"cannot listen for gRPC on {address}: {exc}") from exc
        await server.start()
        log.info("sentry gRPC server listening on %s:%d", settings.listen_address, port)
        renewal = asyncio.create_task(
            _renew_forever(issuer, credentials, identity, policy, metrics, clock)
        )
        serving = True
        log.info(
            "sentry is ready: %s, issuer valid until %s",
            identity,
            issuer.not_after.isoformat(),
        )
        await stop.wait()
        log.info("stopping sentry")
    finally:
        serving = False
        if renewal is not None:
            renewal.cancel()
        await server.stop(STOP_GRACE)
        for http in http_servers:
            http.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _renew_forever(
    issuer: Issuer,
    credentials: ServingCredentials,
    identity: SpiffeId,
    policy: SigningPolicy,
    metrics: SentryMetrics,
    clock: Clock,
) -> None:
    """Renew Sentry's own certificate at half its life; on failure retry, and say why."""
    due = credentials.current.renew_at()
    while True:
        await asyncio.sleep(max(0.0, (due - clock()).total_seconds()))
        try:
            fresh = issue_serving_certificate(
                issuer, identity, clock(), policy.workload_ttl, policy.clock_skew
            )
        except CaInvalid as exc:
            metrics.server_cert_failed("issuer_expired")
            log.error("cannot renew sentry's own certificate: %s", exc)
            due = clock() + RETRY_AFTER
            continue
        credentials.replace(fresh)
        log.info("renewed sentry's own certificate, valid until %s", fresh.not_after.isoformat())
        due = fresh.renew_at()
