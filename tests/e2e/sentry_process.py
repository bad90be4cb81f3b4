"""Starts ``tether sentry`` as the README says (loopback, every port 0: the log says
which ports it took), and calls it as daprd does: grpcio over TLS verified against
ca.crt, pinned to Sentry's peer name."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.spiffe import SpiffeId
from proxy.protos import sentry_pb2, sentry_pb2_grpc
from tests.e2e.harness import READY_TIMEOUT, Cluster, tether_command, wait_until

_LISTENING = re.compile(r"(healthz|metrics|sentry gRPC) server listening on \S+:(\d+)")
SENTRY_PEER = SpiffeId("localhost", "default", "dapr-sentry")


@dataclass
class Sentry:
    process: subprocess.Popen[bytes]
    log_path: Path
    ca_pem: bytes
    grpc_port: int = 0
    healthz_port: int = 0
    metrics_port: int = 0

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def sign(
        self, request: sentry_pb2.SignCertificateRequest
    ) -> sentry_pb2.SignCertificateResponse:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
        options = [("grpc.ssl_target_name_override", SENTRY_PEER.peer_name())]
        with grpc.secure_channel(f"127.0.0.1:{self.grpc_port}", credentials, options) as channel:
            stub = sentry_pb2_grpc.CAStub(channel)
            response: sentry_pb2.SignCertificateResponse = stub.SignCertificate(request, timeout=20)
            return response


def start_sentry(cluster: Cluster, ca_dir: Path, *extra: str) -> Sentry:
    args = [*tether_command(), "sentry", "--issuer-credentials", str(ca_dir),
            "--listen-address", "127.0.0.1", "--port", "0", "--healthz-port", "0",
            "--metrics-port", "0", *extra]  # fmt: skip
    log_path = cluster.root / f"sentry-{len(cluster.processes)}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, env=cluster.env, stdout=log, stderr=subprocess.STDOUT)
    cluster.processes.append(process)
    sentry = Sentry(process, log_path, (ca_dir / "ca.crt").read_bytes())

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"tether sentry exited early:\n{sentry.log()}")
        return "sentry is ready" in sentry.log()

    wait_until(ready, "tether sentry ready", READY_TIMEOUT)
    ports = {name: int(port) for name, port in _LISTENING.findall(sentry.log())}
    sentry.grpc_port = ports["sentry gRPC"]
    sentry.healthz_port = ports["healthz"]
    sentry.metrics_port = ports["metrics"]
    return sentry


def make_csr() -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A CSR as a sidecar makes one: a fresh key; the subject does not matter to Sentry."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM), key


def tether_token(cluster: Cluster, ca_dir: Path, app_id: str, *extra: str) -> str:
    result = cluster.tether(
        "sentry", "token", "--issuer-credentials", str(ca_dir), "--app-id", app_id, *extra
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
