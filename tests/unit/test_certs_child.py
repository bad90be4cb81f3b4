"""The workload identity built in a child process (``python -m certs.issue``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from certs.authority import create_authority, load_issuer, write_authority
from certs.errors import CertError
from certs.issue import decode, encode, issue_in_child
from certs.spiffe import SpiffeId
from certs.workload import issue_workload_identity

ORDERS = SpiffeId("public", "default", "orders")


def test_an_identity_survives_the_pipe(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    write_authority(tmp_path, create_authority("public", now))
    identity = issue_workload_identity(load_issuer(tmp_path, now), ORDERS, now)
    assert decode(encode(identity)) == identity


def test_the_child_issues_a_certificate_for_the_spiffe_id(tmp_path: Path) -> None:
    write_authority(tmp_path, create_authority("public", datetime.now(UTC)))
    identity = asyncio.run(issue_in_child(tmp_path, ORDERS))
    assert identity.spiffe_id == ORDERS
    leaf = x509.load_pem_x509_certificate(identity.certificate_chain_pem)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(ORDERS)]
    assert identity.trust_bundle_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in identity.private_key_pem


def test_the_childs_certificate_error_reaches_the_parent_word_for_word(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="tether certs init"):
        asyncio.run(issue_in_child(tmp_path / "missing", ORDERS))


@pytest.mark.parametrize("text", ["", "not json", "{}", '{"spiffe_id": "x"}'])
def test_anything_but_an_identity_is_a_cert_error(text: str) -> None:
    with pytest.raises(CertError, match="issuing the workload certificate failed"):
        decode(text)
