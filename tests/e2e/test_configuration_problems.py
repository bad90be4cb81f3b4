"""A broken Configuration file stops ``tether sidecar`` with every problem at once,
each as ``FILE: field.path: what is wrong``, worded as in Resiliency files."""

from __future__ import annotations

from tests.e2e.harness import Cluster

BAD = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: appconfig}
spec:
  nameResolution:
    component: sqlite
    configuration: {updateInterval: "5 s", tableName: nodes}
  metric: {enabled: maybe}
  tracing: {stdout: 1, otel: {endpointAddress: "c:4317", timeout: "0s"}}
  mtls: {enabled: true, workloadCertTTL: 0s}
"""


def test_every_configuration_problem_at_once_and_no_traceback(cluster: Cluster) -> None:
    path = cluster.root / "config.yaml"
    path.write_text(BAD)
    result = cluster.tether("sidecar", "--app-id", "orders", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"tether: error: {path}: spec.nameResolution.configuration.updateInterval:"
        ' "5 s" is not a duration',
        f"tether: error: {path}: spec.nameResolution.configuration.tableName:"
        ' "nodes" is not supported yet (only "hosts")',
        f"tether: error: {path}: spec.metric.enabled: expected true or false, got a string",
        f"tether: error: {path}: spec.tracing.stdout: expected true or false, got an integer",
        f"tether: error: {path}: spec.tracing.otel.timeout: must be more than 0",
        f"tether: error: {path}: spec.mtls.workloadCertTTL: must be longer than 0s",
        f"tether: error: {path}: spec.mtls.enabled: a sidecar's mTLS is switched by --enable-mtls",
    ]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
