"""What the certificate tests share: a Configuration with short certificate
lifetimes, and the certificate a sidecar presents on its internal port (read by a
real TLS handshake with a client certificate from the same CA)."""

from __future__ import annotations

import re
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from certs.authority import load_issuer
from certs.spiffe import SpiffeId
from certs.tls import client_ssl_context
from certs.workload import issue_workload_identity
from tests.e2e.harness import Sidecar, wait_until


def short_lived_config(path: Path, ttl: str, skew: str = "0s") -> Path:
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: rotation}\n"
        f"spec:\n  mtls:\n    workloadCertTTL: {ttl}\n    allowedClockSkew: {skew}\n"
    )
    return path


def internal_port(sidecar: Sidecar) -> int:
    found = wait_until(
        lambda: re.search(r"internal gRPC on [^ ]+:(\d+) \(mTLS on\)", sidecar.log()),
        f"{sidecar.app_id}'s ready line",
    )
    return int(found.group(1))


class CertificateProbe:
    """TLS handshakes to sidecars' internal ports as an app of the same CA."""

    def __init__(self, ca_dir: Path) -> None:
        now = datetime.now(UTC)
        identity = issue_workload_identity(
            load_issuer(ca_dir, now), SpiffeId("public", "default", "probe"), now
        )
        self._context = client_ssl_context(identity)

    def presented(self, port: int, app_id: str) -> dict[str, Any]:
        """The certificate the sidecar of ``app_id`` presents to a new connection now."""
        name = SpiffeId("public", "default", app_id).peer_name()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            self._context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            certificate = tls.getpeercert()
        assert certificate is not None
        return certificate


def not_after(certificate: dict[str, Any]) -> float:
    return ssl.cert_time_to_seconds(certificate["notAfter"])
