from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from proxy.observability.metric_settings import MetricSettings, PathTemplates
from proxy.observability.metrics import Metrics
from proxy.observability.series_cap import OVERFLOW

APP = "orders"

# Dapr's bucket boundaries, written out here so the tests check the code against Dapr
# rather than against itself. Latency (ms): reference/dapr-compat.md, "Exporter".
LATENCY_MS = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200,
    250, 300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip
# Bytes: Dapr's defaultSizeDistribution in pkg/diagnostics, 1<<10 up to 4<<30.
SIZES = (
    1 << 10, 2 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20,
    64 << 20, 256 << 20, 1 << 30, 4 << 30,
)  # fmt: skip

HTTP = ["app_id", "method", "path", "status"]
POLICY = ["app_id", "name", "policy", "namespace", "flow_direction", "target", "status"]

# Dapr's exported name -> (type, label names, bucket set or None)
EXPECTED: dict[str, tuple[str, list[str], tuple[int, ...] | None]] = {
    "dapr_runtime_service_invocation_req_sent_total": (
        "counter",
        ["app_id", "dst_app_id", "type"],
        None,
    ),
    "dapr_runtime_service_invocation_req_recv_total": ("counter", ["app_id", "src_app_id"], None),
    "dapr_runtime_service_invocation_res_sent_total": (
        "counter",
        ["app_id", "dst_app_id", "status"],
        None,
    ),
    "dapr_runtime_service_invocation_res_recv_total": (
        "counter",
        ["app_id", "src_app_id", "status", "type"],
        None,
    ),
    "dapr_runtime_service_invocation_res_recv_latency_ms": (
        "histogram",
        ["app_id", "src_app_id", "status"],
        LATENCY_MS,
    ),
    "dapr_http_server_request_count": ("counter", HTTP, None),
    "dapr_http_server_latency": ("histogram", HTTP, LATENCY_MS),
    "dapr_http_server_response_count": ("counter", HTTP, None),
    "dapr_http_server_request_bytes": ("histogram", ["app_id"], SIZES),
    "dapr_http_server_response_bytes": ("histogram", ["app_id"], SIZES),
    "dapr_http_client_completed_count": ("counter", HTTP, None),
    "dapr_http_client_roundtrip_latency": ("histogram", HTTP, LATENCY_MS),
    "dapr_http_client_sent_bytes": ("histogram", HTTP, SIZES),
    "dapr_http_client_received_bytes": ("histogram", ["app_id"], SIZES),
    "dapr_grpc_io_server_completed_rpcs": (
        "counter",
        ["app_id", "grpc_server_method", "grpc_server_status"],
        None,
    ),
    "dapr_grpc_io_server_server_latency": (
        "histogram",
        ["app_id", "grpc_server_method", "grpc_server_status"],
        LATENCY_MS,
    ),
    "dapr_grpc_io_server_received_bytes_per_rpc": (
        "histogram",
        ["app_id", "grpc_server_method"],
        SIZES,
    ),
    "dapr_grpc_io_server_sent_bytes_per_rpc": (
        "histogram",
        ["app_id", "grpc_server_method"],
        SIZES,
    ),
    "dapr_grpc_io_client_completed_rpcs": (
        "counter",
        ["app_id", "grpc_client_method", "grpc_client_status"],
        None,
    ),
    "dapr_grpc_io_client_roundtrip_latency": (
        "histogram",
        ["app_id", "grpc_client_method", "grpc_client_status"],
        LATENCY_MS,
    ),
    "dapr_grpc_io_client_sent_bytes_per_rpc": (
        "histogram",
        ["app_id", "grpc_client_method"],
        SIZES,
    ),
    "dapr_grpc_io_client_received_bytes_per_rpc": (
        "histogram",
        ["app_id", "grpc_client_method"],
        SIZES,
    ),
    "dapr_resiliency_loaded": ("counter", ["app_id", "name", "namespace"], None),
    "dapr_resiliency_count": ("counter", POLICY, None),
    "dapr_resiliency_activations_total": ("counter", POLICY, None),
    "dapr_resiliency_cb_state": ("gauge", POLICY, None),
}


def exercise(m: Metrics) -> None:
    m.req_sent("billing", streaming=False)
    m.res_recv("billing", "200", streaming=True, latency_ms=12.5)
    m.req_recv("frontend")
    m.res_sent("frontend", "200")
    m.http_server("POST", "/v1.0/invoke/billing/method/pay", 200, 3.0, 100, 5000)
    m.http_client("POST", "/pay", 201, 2.0, 100, 70000)
    m.grpc_server("/dapr.proto.runtime.v1.Dapr/InvokeService", "OK", 4.0, 300, 400)
    m.grpc_client("/dapr.proto.internals.v1.ServiceInvocation/CallLocal", "OK", 3.0, 300, 400)
    m.resiliency_loaded("myresiliency", "default")
    m.resiliency_count("myresiliency", "retry", "default", "outbound", "app_billing")
    m.resiliency_activation("myresiliency", "retry", "default", "outbound", "app_billing")
    m.cb_state("myresiliency", "default", "app_billing", "closed")


def scrape(m: Metrics) -> str:
    body, content_type = m.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return body.decode()


def families(m: Metrics) -> dict[str, tuple[str, list[Sample]]]:
    """Family name as exported -> (type, samples).

    The parser renames every counter sample to ``<family>_total``, so whether the
    exported name has the suffix is read from the ``# TYPE`` lines.
    """
    text = scrape(m)
    typed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    out: dict[str, tuple[str, list[Sample]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name
        if family.type == "counter" and name + "_total" in typed:
            name += "_total"
        assert name in typed, name
        out[name] = (family.type, family.samples)
    return out


def series(samples: list[Sample]) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) for s in samples}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    for s in samples:
        if s.name in (name, name + "_total") and all(
            s.labels.get(k) == v for k, v in labels.items()
        ):
            return s.value
    raise AssertionError(f"no sample {name} {labels}")


def test_every_family_has_dapr_name_type_and_labels() -> None:
    m = Metrics(APP)
    exercise(m)
    got = families(m)
    for name, (typ, labels, _) in EXPECTED.items():
        assert name in got, name
        assert got[name][0] == typ, name
        for s in got[name][1]:
            assert sorted(k for k in s.labels if k != "le") == sorted(labels), name
            assert s.labels["app_id"] == APP


def test_exposition_text_uses_exact_names_and_no_created_series() -> None:
    m = Metrics(APP)
    exercise(m)
    text = scrape(m)
    for name, (typ, _, _) in EXPECTED.items():
        assert f"\n# TYPE {name} {typ}\n" in text, name
    counters = [n for n, (t, _, _) in EXPECTED.items() if t == "counter"]
    for name in counters:
        assert f"\n{name}{{" in text, name
    assert "dapr_http_server_request_count_total" not in text
    assert "dapr_resiliency_count_total" not in text
    assert "_total_total" not in text
    assert "_created" not in text


def test_process_metrics_are_exported() -> None:
    text = scrape(Metrics(APP))
    assert "# TYPE process_cpu_seconds_total counter" in text
    assert "python_info" in text


def test_registry_is_private() -> None:
    a, b = Metrics("a"), Metrics("b")
    a.req_recv("x")
    assert 'app_id="a"' in scrape(a)
    assert 'app_id="a"' not in scrape(b)


def test_bucket_boundaries() -> None:
    m = Metrics(APP)
    exercise(m)
    got = families(m)
    for name, (_, _, buckets) in EXPECTED.items():
        if buckets is None:
            continue
        bounds = [float(s.labels["le"]) for s in got[name][1] if s.name.endswith("_bucket")]
        assert bounds == [float(b) for b in buckets] + [float("inf")], name


def test_latency_lands_in_dapr_bucket() -> None:
    m = Metrics(APP)
    m.http_server("GET", "/a", 200, 12.0, 0, 0)
    samples = families(m)["dapr_http_server_latency"][1]
    name = "dapr_http_server_latency_bucket"
    assert value(samples, name, le="10.0") == 0
    assert value(samples, name, le="13.0") == 1
    assert value(samples, "dapr_http_server_latency_sum") == 12.0


def test_custom_latency_buckets() -> None:
    m = Metrics(APP, MetricSettings(latency_buckets=(5.0, 50.0)))
    m.grpc_client("/x.Y/Z", "OK", 7.0, 1, 1)
    samples = families(m)["dapr_grpc_io_client_roundtrip_latency"][1]
    bounds = [s.labels["le"] for s in samples if s.name.endswith("_bucket")]
    assert bounds == ["5.0", "50.0", "+Inf"]


@pytest.mark.parametrize("buckets", [(), (5.0, 5.0), (10.0, 1.0)])
def test_bad_buckets_rejected(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        MetricSettings(latency_buckets=buckets)


def test_counters_are_monotone() -> None:
    m = Metrics(APP)
    previous = 0.0
    for _ in range(5):
        m.req_sent("billing", streaming=True)
        m.http_server("GET", "/a", 200, 1.0, 0, 0)
        got = families(m)
        sent = value(
            got["dapr_runtime_service_invocation_req_sent_total"][1],
            "dapr_runtime_service_invocation_req_sent_total",
            type="streaming",
        )
        served = value(
            got["dapr_http_server_request_count"][1], "dapr_http_server_request_count", path="/a"
        )
        assert sent == served > previous
        previous = sent


def test_caller_and_callee_labels() -> None:
    m = Metrics(APP)
    exercise(m)
    got = families(m)
    name = "dapr_runtime_service_invocation_res_recv_total"
    assert value(got[name][1], name, src_app_id="billing", status="200", type="streaming") == 1
    name = "dapr_runtime_service_invocation_res_sent_total"
    assert value(got[name][1], name, dst_app_id="frontend", status="200") == 1
    name = "dapr_runtime_service_invocation_res_recv_latency_ms"
    assert value(got[name][1], name + "_sum", src_app_id="billing") == 12.5


def test_path_templates_match_segments() -> None:
    t = PathTemplates(["/orders/{orderID}", "/v1.0/invoke/{appId}/method/{method}", "/orders/new"])
    assert t.match("/orders/42") == "/orders/{orderID}"
    assert t.match("/orders/new") == "/orders/new"  # literal beats placeholder
    assert t.match("/orders/42?x=1") == "/orders/{orderID}"
    assert t.match("/orders/") is None  # a placeholder needs a non-empty segment
    assert t.match("/orders/42/items") is None
    assert t.match("/orders") is None
    assert t.match("/v1.0/invoke/billing/method/pay") == "/v1.0/invoke/{appId}/method/{method}"
    assert t.match("/v1.0/invoke/billing/method/pay/more") is None
    assert not PathTemplates([])


def test_path_matching_labels_with_template() -> None:
    m = Metrics(APP, MetricSettings(path_matching=("/orders/{orderID}",)))
    for i in range(50):
        m.http_server("GET", f"/orders/{i}", 200, 1.0, 0, 0)
    m.http_server("GET", "/other/1", 200, 1.0, 0, 0)
    samples = families(m)["dapr_http_server_request_count"][1]
    name = "dapr_http_server_request_count"
    assert value(samples, name, path="/orders/{orderID}", method="GET") == 50
    # increasedCardinality defaults to true: unmatched paths keep their raw value.
    assert value(samples, name, path="/other/1") == 1


def test_low_cardinality_without_match_empties_path_and_verbs() -> None:
    settings = MetricSettings(
        increased_cardinality=False, path_matching=("/orders/{id}",), exclude_verbs=True
    )
    m = Metrics(APP, settings)
    m.http_server("GET", "/orders/1", 200, 1.0, 0, 0)
    m.http_server("POST", "/a/b", 500, 1.0, 0, 0)
    m.http_server("PUT", "/c", 500, 1.0, 0, 0)
    got = families(m)
    assert "dapr_http_server_response_count" not in got
    samples = got["dapr_http_server_request_count"][1]
    assert series(samples) == {
        (("app_id", APP), ("method", ""), ("path", "/orders/{id}"), ("status", "200")),
        (("app_id", APP), ("method", ""), ("path", ""), ("status", "500")),
    }
    assert value(samples, "dapr_http_server_request_count", path="", status="500") == 2


def test_low_cardinality_keeps_verbs_unless_excluded() -> None:
    m = Metrics(APP, MetricSettings(increased_cardinality=False))
    m.http_client("GET", "/x/1", 200, 1.0, 0, 0)
    samples = families(m)["dapr_http_client_completed_count"][1]
    assert value(samples, "dapr_http_client_completed_count", method="GET", path="") == 1


def test_ten_thousand_paths_are_capped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics(APP, MetricSettings(max_series_per_metric=1000))
    with caplog.at_level(logging.WARNING, logger="tether.metrics"):
        for i in range(10_000):
            m.http_server("GET", f"/items/{i}", 200, 1.0, 10, 10)
    got = families(m)
    for name in (
        "dapr_http_server_request_count",
        "dapr_http_server_latency",
        "dapr_http_server_response_count",
    ):
        found = series(got[name][1])
        assert len(found) == 1001, name  # 1000 real paths + the overflow series
        assert (("app_id", APP), ("method", OVERFLOW), ("path", OVERFLOW), ("status", "200")) in (
            found
        )
    requests = got["dapr_http_server_request_count"][1]
    assert sum(s.value for s in requests) == 10_000
    assert value(requests, "dapr_http_server_request_count", path=OVERFLOW) == 9_000
    warnings = [r for r in caplog.records if r.name == "tether.metrics"]
    assert len(warnings) == 3  # once per capped family, not once per path
    assert len({r.getMessage() for r in warnings}) == 3
    dapr_series = sum(len(series(s)) for n, (_, s) in got.items() if n.startswith("dapr_"))
    assert dapr_series < 3_100


def test_cap_applies_to_app_ids_and_grpc_methods() -> None:
    m = Metrics(APP, MetricSettings(max_series_per_metric=3))
    for i in range(10):
        m.req_sent(f"app{i}", streaming=False)
        m.grpc_server(f"/svc.S/M{i}", "OK", 1.0, 1, 1)
    got = families(m)
    sent = got["dapr_runtime_service_invocation_req_sent_total"][1]
    assert len(series(sent)) == 4
    assert value(sent, sent[0].name, dst_app_id=OVERFLOW, type="unary") == 7
    grpc = got["dapr_grpc_io_server_completed_rpcs"][1]
    assert value(grpc, grpc[0].name, grpc_server_method=OVERFLOW, grpc_server_status="OK") == 7


def test_cb_state_values_one_series_per_breaker() -> None:
    m = Metrics(APP)
    name = "dapr_resiliency_cb_state"
    expected = [("closed", 0.0), ("open", 2.0), ("half-open", 1.0), ("bogus", -1.0)]
    for state, number in expected:
        m.cb_state("myresiliency", "default", "app_billing", state)
        samples = families(m)[name][1]
        assert len(samples) == 1
        s = samples[0]
        assert s.value == number
        assert s.labels == {
            "app_id": APP,
            "name": "myresiliency",
            "policy": "circuitbreaker",
            "namespace": "default",
            "flow_direction": "outbound",
            "target": "app_billing",
            "status": state if number >= 0 else "unknown",
        }
    m.cb_state("myresiliency", "default", "app_other", "open")
    assert len(families(m)[name][1]) == 2


def test_settings_defaults_follow_dapr() -> None:
    s = MetricSettings()
    assert s.increased_cardinality and not s.exclude_verbs
    assert s.path_matching == ()
    assert s.latency_buckets == LATENCY_MS
    assert s.max_series_per_metric == 1000
    with pytest.raises(ValueError):
        MetricSettings(max_series_per_metric=0)
