"""``tokenValidators: [{name: insecure}]`` lets daprd-style INSECURE requests through
under Dapr's rules; ``workloadCertTTL``/``allowedClockSkew`` set the window; Sentry
renews its own short-lived certificate and new handshakes get the new one."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from proxy.protos import sentry_pb2
from tests.e2e.harness import Cluster, wait_until
from tests.e2e.sentry_process import make_csr, start_sentry

Request = sentry_pb2.SignCertificateRequest
CONFIG = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: daprsystem
spec:
  mtls:
    workloadCertTTL: 6s
    allowedClockSkew: 1s
    tokenValidators:
      - name: insecure
"""


def _served_certificate(port: int, ca_pem: bytes) -> x509.Certificate:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.check_hostname = False
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_insecure_requests_under_daprs_rules(cluster: Cluster, tmp_path: Path) -> None:
    ca_dir = cluster.certs_init(tmp_path / "ca")
    config = tmp_path / "sentry.yaml"
    config.write_text(CONFIG)
    sentry = start_sentry(cluster, ca_dir, "--config", str(config))
    csr, _ = make_csr()

    before = datetime.now(UTC)
    answer = sentry.sign(Request(id="checkout", namespace="shop", certificate_signing_request=csr,
                                 token_validator=Request.INSECURE))  # fmt: skip
    after = datetime.now(UTC)
    leaf = x509.load_pem_x509_certificate(answer.workload_certificate)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # No trust domain asked for: Dapr's default, public.
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://public/ns/shop/checkout"
    ]
    slack = timedelta(seconds=2)
    assert after + timedelta(seconds=6) + slack >= leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc >= before + timedelta(seconds=6) - slack
    assert leaf.not_valid_before_utc <= after - timedelta(seconds=1) + slack

    for fields, code in (
        ({"id": "a.b", "namespace": "shop"}, grpc.StatusCode.PERMISSION_DENIED),
        ({"id": "x" * 65, "namespace": "shop"}, grpc.StatusCode.PERMISSION_DENIED),
        ({"id": "checkout", "namespace": ""}, grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            sentry.sign(Request(certificate_signing_request=csr,
                                token_validator=Request.INSECURE, **fields))  # fmt: skip
        assert refused.value.code() == code, fields
    with pytest.raises(grpc.RpcError) as no_csr:
        sentry.sign(Request(id="checkout", namespace="shop", token_validator=Request.INSECURE))
    assert no_csr.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Sentry's own certificate lives 6s too: renewed at half-life, new handshakes see it.
    first = _served_certificate(sentry.grpc_port, sentry.ca_pem)
    wait_until(lambda: "renewed sentry's own certificate" in sentry.log(), "a renewal", 30)
    second = wait_until(
        lambda: (
            (c := _served_certificate(sentry.grpc_port, sentry.ca_pem)).serial_number
            != first.serial_number
            and c
        ),
        "the renewed certificate served",
        30,
    )
    assert second.not_valid_after_utc > first.not_valid_after_utc
    # And calls keep working over it.
    assert sentry.sign(Request(id="checkout", namespace="shop", certificate_signing_request=csr,
                               token_validator=Request.INSECURE)).workload_certificate  # fmt: skip
    assert cluster.stop(sentry.process) == 0
