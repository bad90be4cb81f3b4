"""A minimal stand-in for a Sentry, to test the sidecar's Sentry client until
``tether sentry`` exists: Dapr's ``CA/SignCertificate`` over TLS, signing CSRs as the
contract says (the CSR's public key only; URI SAN + peer-name DNS SAN; server and
client EKU; NotBefore = now - skew, NotAfter = now + ttl), from a CA folder made by
``tether certs init``. It checks no token; ``refuse`` makes it deny every request."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.authority import Issuer, load_issuer, signing_hash
from certs.spiffe import SpiffeId
from certs.workload import issue_workload_identity
from proxy.protos import sentry_pb2, sentry_pb2_grpc


@dataclass
class StandInSentry:
    ca_dir: Path
    ttl: timedelta = timedelta(hours=24)
    skew: timedelta = timedelta(minutes=15)
    refuse: str | None = None  # PERMISSION_DENIED with this reason
    requests: list[Any] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._issuer = load_issuer(self.ca_dir, datetime.now(UTC))
        sentry = SpiffeId("localhost", "default", "dapr-sentry")
        own = issue_workload_identity(
            self._issuer, sentry, datetime.now(UTC), extra_dns_names=(sentry.exact_name(),)
        )
        self._credentials = grpc.ssl_server_credentials(
            [(own.private_key_pem, own.certificate_chain_pem)]
        )
        self._server: grpc.Server | None = None

    def start(self) -> StandInSentry:
        """Serve on the port given (0: a free one); ``port`` is then the one bound."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        sentry_pb2_grpc.add_CAServicer_to_server(_Servicer(self), server)
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", self._credentials)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(None).wait()
            self._server = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def sign(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            self.requests.append(request)
        if self.refuse is not None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, self.refuse)
        try:
            csr = x509.load_pem_x509_csr(request.certificate_signing_request)
            assert csr.is_signature_valid
            spiffe = SpiffeId(request.trust_domain or "public", request.namespace, request.id)
        except Exception as exc:  # a stand-in: any bad input is INVALID_ARGUMENT
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad request: {exc}")
        leaf = _leaf(self._issuer, csr, spiffe, datetime.now(UTC), self.ttl, self.skew)
        # Dapr's pre-1.10 shape (the leaf alone, the issuer chain beside it), which the
        # client still takes; tether sentry's own answer has the 1.10+ shape.
        answer = sentry_pb2.SignCertificateResponse(
            workload_certificate=leaf.public_bytes(serialization.Encoding.PEM),
            trust_chain_certificates=[self._issuer.chain_pem],
        )
        answer.valid_until.FromDatetime(leaf.not_valid_after_utc)
        return answer


class _Servicer(sentry_pb2_grpc.CAServicer):  # type: ignore[misc]
    def __init__(self, sentry: StandInSentry) -> None:
        self._sentry = sentry

    def SignCertificate(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._sentry.sign(request, context)


def _leaf(
    issuer: Issuer,
    csr: x509.CertificateSigningRequest,
    spiffe: SpiffeId,
    now: datetime,
    ttl: timedelta,
    skew: timedelta,
) -> x509.Certificate:
    names = [x509.UniformResourceIdentifier(str(spiffe)), x509.DNSName(spiffe.peer_name())]
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.certificate.subject)
        .public_key(csr.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - skew)
        .not_valid_after(min(now + ttl, issuer.not_after))
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .sign(issuer.private_key, signing_hash(issuer.private_key))
    )
