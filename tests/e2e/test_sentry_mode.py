"""Sidecars that hold no CA key: ``--sentry-address`` with ``DAPR_TRUST_ANCHORS``,
against a stand-in Sentry (tests/e2e/sentry_standin.py) until ``tether sentry`` is
here. Each sidecar makes its own key, gets its certificate from Sentry (its
``--certs-dir`` is an empty folder), renews it there, and they call each other; a
Sentry that refuses or cannot be reached stops the start with one line."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.e2e.certificates import CertificateProbe, internal_port, not_after
from tests.e2e.harness import Cluster, free_port, request, wait_until
from tests.e2e.sentry_standin import StandInSentry

TTL = timedelta(seconds=10)


@pytest.fixture
def ca_dir(cluster: Cluster) -> Path:
    return cluster.certs_init(cluster.root / "sentry-ca")


@pytest.fixture
def sentry(ca_dir: Path) -> Iterator[StandInSentry]:
    started = StandInSentry(ca_dir, ttl=TTL, skew=timedelta(0)).start()
    try:
        yield started
    finally:
        started.stop()


def sentry_flags(cluster: Cluster, address: str) -> tuple[str, ...]:
    empty = cluster.root / "no-ca"
    empty.mkdir(exist_ok=True)
    return ("--sentry-address", address, "--certs-dir", str(empty))


def anchors(ca_dir: Path) -> dict[str, str]:
    return {"DAPR_TRUST_ANCHORS": (ca_dir / "ca.crt").read_text()}


def test_sidecars_with_certificates_from_sentry_call_each_other(
    cluster: Cluster, ca_dir: Path, sentry: StandInSentry
) -> None:
    flags, env = sentry_flags(cluster, sentry.address), anchors(ca_dir)
    orders_app, checkout_app = cluster.app("orders"), cluster.app("checkout")
    orders = cluster.sidecar("orders", orders_app, extra=flags, env=env)
    checkout = cluster.sidecar("checkout", checkout_app, extra=flags, env=env)
    assert sorted(r.id for r in sentry.requests) == ["checkout", "orders"]
    assert not list((cluster.root / "no-ca").iterdir())

    def both_ways() -> None:
        there = request(checkout.http_port, "POST", "/v1.0/invoke/orders/method/a", b"1")
        back = request(orders.http_port, "POST", "/v1.0/invoke/checkout/method/b", b"2")
        assert (there.status, back.status) == (200, 200), (there.body, back.body)

    both_ways()
    assert len(orders_app.received()) == len(checkout_app.received()) == 1
    # Renewed from Sentry at half-life, and still calling.
    wait_until(lambda: "renewed from Sentry" in orders.log(), "a renewal from Sentry", 30)
    both_ways()

    # Sentry gone: renewals fail, and healthz says so before the certificate expires.
    probe = CertificateProbe(ca_dir)
    expires = not_after(probe.presented(internal_port(orders), "orders"))
    sentry.stop()
    wait_until(
        lambda: request(orders.http_port, "GET", "/v1.0/healthz").status == 500,
        "healthz unhealthy without Sentry",
        30,
    )
    assert time.time() < expires
    assert b"[certificate]" in request(orders.http_port, "GET", "/v1.0/healthz").body


def start_error(cluster: Cluster, flags: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
    sidecar = cluster.sidecar("orders", extra=flags, env=env, wait=False)
    code = sidecar.process.wait(60)
    return code, sidecar.log()


def test_a_sentry_refusal_stops_the_start_in_one_line(
    cluster: Cluster, ca_dir: Path, sentry: StandInSentry
) -> None:
    sentry.refuse = "the token names another app"
    code, log = start_error(cluster, sentry_flags(cluster, sentry.address), anchors(ca_dir))
    assert code == 1
    assert (
        f"tether: error: Sentry at {sentry.address} refused the certificate "
        "(PERMISSION_DENIED): the token names another app"
    ) in log.splitlines()


def test_an_unreachable_sentry_is_retried_then_stops_the_start(
    cluster: Cluster, ca_dir: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    code, log = start_error(cluster, sentry_flags(cluster, address), anchors(ca_dir))
    assert code == 1
    (line,) = [line for line in log.splitlines() if line.startswith("tether: error:")]
    assert f"cannot get a workload certificate from Sentry at {address}" in line
    assert "(tried 5 times over" in line


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        ((), {}, "set DAPR_TRUST_ANCHORS to the PEM text of Sentry's ca.crt"),
        ((), {"DAPR_TRUST_ANCHORS": "not a certificate"}, "DAPR_TRUST_ANCHORS: holds no PEM"),
        (
            (),
            {"DAPR_TRUST_ANCHORS": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
            "DAPR_TRUST_ANCHORS: not valid PEM certificates",
        ),
        (("--enable-mtls=false",), None, "--sentry-address: needs --enable-mtls"),
        (("--sentry-address", "nohost"), None, "is not HOST:PORT"),
    ],
)
def test_sentry_settings_that_cannot_work_are_refused(
    cluster: Cluster, ca_dir: Path, extra: tuple[str, ...], env: dict[str, str] | None, message: str
) -> None:
    flags = ["sidecar", "--app-id", "orders", "--enable-mtls", "--sentry-address", "127.0.0.1:1"]
    result = cluster.tether(*flags, *extra, env=env if env is not None else anchors(ca_dir))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
