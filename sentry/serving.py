"""Sentry's own TLS certificate: issued from its issuer at start, renewed at half its
life, and handed to grpcio through ``dynamic_ssl_server_credentials``, whose fetcher
runs before every new handshake (so it only returns what is ready: no I/O there).
Live connections keep the certificate they started with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc

from certs.authority import Issuer
from certs.spiffe import SpiffeId
from certs.workload import issue_workload_identity

SENTRY_APP_ID = "dapr-sentry"
# Besides its SPIFFE peer name, so a client may also dial it by "localhost".
EXTRA_DNS_NAMES = ("localhost",)
# After a failed renewal (an expired issuer), try again this soon (Dapr's sidecar: 10s).
RETRY_AFTER = timedelta(seconds=10)


def sentry_identity(trust_domain: str, namespace: str) -> SpiffeId:
    return SpiffeId(trust_domain, namespace, SENTRY_APP_ID)


@dataclass(frozen=True)
class ServingCertificate:
    private_key_pem: bytes
    chain_pem: bytes  # leaf, then the issuer chain
    issued_at: datetime
    not_after: datetime

    def renew_at(self) -> datetime:
        """Half-way through what it was issued for (Dapr's rule for workload certificates)."""
        return self.issued_at + (self.not_after - self.issued_at) / 2


def issue_serving_certificate(
    issuer: Issuer, spiffe_id: SpiffeId, now: datetime, ttl: timedelta, clock_skew: timedelta
) -> ServingCertificate:
    """A fresh key and certificate for Sentry itself; CaInvalid if the issuer expired."""
    identity = issue_workload_identity(
        issuer,
        spiffe_id,
        now,
        ttl=ttl,
        clock_skew=clock_skew,
        # The whole ID as a DNS name too, so a sidecar pins Sentry's trust domain as well.
        extra_dns_names=(*EXTRA_DNS_NAMES, spiffe_id.exact_name()),
    )
    return ServingCertificate(
        private_key_pem=identity.private_key_pem,
        chain_pem=identity.certificate_chain_pem,
        issued_at=now,
        not_after=identity.not_after,
    )


def _configuration(certificate: ServingCertificate) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(certificate.private_key_pem, certificate.chain_pem)]
    )


class ServingCredentials:
    """The certificate new handshakes get; ``replace`` swaps it for the next ones."""

    def __init__(self, first: ServingCertificate) -> None:
        self.current = first
        self._initial = _configuration(first)
        # replace() writes _latest and only the fetcher writes _delivered, so the
        # fetcher (on a grpc core thread) and the event loop never lose an update.
        self._latest = self._initial
        self._delivered = self._initial

    def replace(self, certificate: ServingCertificate) -> None:
        # Built here, on the event loop; the fetcher only hands it over.
        self._latest = _configuration(certificate)
        self.current = certificate

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        latest = self._latest
        if latest is self._delivered:
            return None
        self._delivered = latest
        return latest

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server-only TLS, as Dapr's Sentry: a client proves who it is with its token."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=False
        )
