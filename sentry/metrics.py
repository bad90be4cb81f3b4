"""Sentry's Prometheus metrics under Dapr Sentry's names (dapr ``pkg/sentry/monitoring``).

- ``dapr_sentry_cert_sign_request_received_total``: SignCertificate requests received;
- ``dapr_sentry_cert_sign_success_total``: certificates issued;
- ``dapr_sentry_cert_sign_failure_total{reason}``: requests refused, by Dapr's older
  reason words (``insufficient_data``, ``req_id_validation``, ``cert_parse``,
  ``cert_sign``; Dapr 1.12+ says ``sign`` for every one);
- ``dapr_sentry_servercert_issue_failed_total{reason}``: Sentry's own serving
  certificate could not be renewed;
- ``dapr_sentry_issuercert_expiry_timestamp``: when the issuer certificate expires
  (Unix seconds).
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class SentryMetrics:
    """One registry per Sentry (never the global one), so tests can make several."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._received = Counter(
            "dapr_sentry_cert_sign_request_received",
            "The number of CSRs received.",
            registry=self.registry,
        )
        self._success = Counter(
            "dapr_sentry_cert_sign_success",
            "The number of certificates issuances that have succeeded.",
            registry=self.registry,
        )
        self._failure = Counter(
            "dapr_sentry_cert_sign_failure",
            "The number of errors occurred when signing the CSR.",
            ["reason"],
            registry=self.registry,
        )
        self._server_cert_failed = Counter(
            "dapr_sentry_servercert_issue_failed",
            "The number of server TLS certificate issuance failures.",
            ["reason"],
            registry=self.registry,
        )
        self._issuer_expiry = Gauge(
            "dapr_sentry_issuercert_expiry_timestamp",
            "The unix timestamp, in seconds, when issuer/root cert will expire.",
            registry=self.registry,
        )

    def request_received(self) -> None:
        self._received.inc()

    def signed(self) -> None:
        self._success.inc()

    def refused(self, reason: str) -> None:
        self._failure.labels(reason=reason).inc()

    def server_cert_failed(self, reason: str) -> None:
        self._server_cert_failed.labels(reason=reason).inc()

    def issuer_expires(self, when: datetime) -> None:
        self._issuer_expiry.set(int(when.timestamp()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
