"""The exec probes of deploy/kubernetes/, run as the kubelet would (exit status only)
against a real tether sidecar: startup and liveness pass while the app is sick,
readiness does not, and nothing passes when the sidecar is gone."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.harness import Cluster, free_port, request, wait_until
from tests.unit.test_kubernetes_manifests import manifest_objects, probe_commands

HEALTH = ("--enable-app-health-check", "--app-health-probe-interval", "1",
          "--app-health-threshold", "1")  # fmt: skip


def _probe_results(http_port: int) -> dict[str, int]:
    """Each probe's exit status, aimed at ``http_port`` instead of the pod's 3500."""
    results = {}
    for kind, command in probe_commands(manifest_objects("Deployment")["orders"]).items():
        # The image's `python`; here the interpreter running the tests.
        argv = [sys.executable, *command[1:5], str(http_port), *command[6:]]
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        results[kind] = done.returncode
    return results


def test_readiness_follows_the_app_and_liveness_only_the_sidecar(cluster: Cluster) -> None:
    app = cluster.app("orders")
    sick = cluster.sidecar(
        "orders", app, mtls=False, extra=(*HEALTH, "--app-health-check-path", "/status/503"),
        wait=False,
    )  # fmt: skip
    wait_until(
        lambda: request(sick.http_port, "GET", "/v1.0/healthz/outbound").status == 204,
        "the sidecar is up",
    )
    results = _probe_results(sick.http_port)
    assert results["startupProbe"] == 0
    assert results["livenessProbe"] == 0
    assert results["readinessProbe"] != 0

    healthy = cluster.sidecar(
        "orders", app, mtls=False, extra=(*HEALTH, "--app-health-check-path", "/status/200"),
        wait=False,
    )  # fmt: skip
    wait_until(
        lambda: request(healthy.http_port, "GET", "/v1.0/healthz").status == 204,
        "the app is healthy",
    )
    assert set(_probe_results(healthy.http_port).values()) == {0}


def test_every_probe_fails_when_nothing_listens() -> None:
    results = _probe_results(free_port())
    assert all(status != 0 for status in results.values()), results
