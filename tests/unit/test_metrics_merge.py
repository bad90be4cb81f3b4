"""The merge of the workers' expositions (``--workers N``), checked with
prometheus_client's own text parser on real ``Metrics`` output."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proxy.observability.metrics import Metrics
from proxy.observability.metrics_merge import merge_expositions, with_label

APP = "orders"
PATH = "/v1.0/invoke/checkout/method/buy"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in parsed, f"duplicate series {key}"
            parsed[key] = sample.value
    return parsed


def two_workers() -> tuple[str, str]:
    first, second = Metrics(APP), Metrics(APP)
    for _ in range(3):
        first.http_server("POST", PATH, 200, 1.5, 100, 200)
    for _ in range(2):
        second.http_server("POST", PATH, 200, 40.0, 100, 200)
    second.http_server("POST", PATH, 500, 3.0, 10, 20)  # a series only the second has
    first.cb_state("policy", "default", "app_checkout", "closed")
    second.cb_state("policy", "default", "app_checkout", "open")
    first.resolution_answer("checkout", "default", 3)
    second.resolution_answer("checkout", "default", 3)
    return first.exposition()[0].decode(), second.exposition()[0].decode()


def labels(**pairs: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs.items()))


def le(series: tuple[tuple[str, str], ...], bound: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((*series, ("le", bound))))


def test_counters_and_histograms_are_summed() -> None:
    first, second = two_workers()
    merged = samples(merge_expositions([("0", first), ("1", second)]))
    ok = labels(app_id=APP, method="POST", path=PATH, status="200")
    # The parser reports Dapr's bare counter under <name>_total; the merged text keeps
    # Dapr's name (see test_dapr_names_and_types_are_kept).
    assert merged[("dapr_http_server_request_count_total", ok)] == 5
    assert merged[("dapr_http_server_latency_count", ok)] == 5
    assert merged[("dapr_http_server_latency_sum", ok)] == 3 * 1.5 + 2 * 40.0
    assert merged[("dapr_http_server_latency_bucket", le(ok, "2.0"))] == 3
    assert merged[("dapr_http_server_latency_bucket", le(ok, "50.0"))] == 5
    assert merged[("dapr_http_server_latency_bucket", le(ok, "+Inf"))] == 5
    failed = labels(app_id=APP, method="POST", path=PATH, status="500")
    assert merged[("dapr_http_server_request_count_total", failed)] == 1
    size = labels(app_id=APP, le="1024.0")
    assert merged[("dapr_http_server_request_bytes_bucket", size)] == 6


def test_gauges_take_the_largest_value() -> None:
    first, second = two_workers()
    merged = samples(merge_expositions([("0", first), ("1", second)]))
    cb = {k: v for k, v in merged.items() if k[0] == "dapr_resiliency_cb_state"}
    assert cb, "the breaker state is exported"
    assert max(cb.values()) == 2.0  # the open breaker of worker 1, not closed + open
    instances = {k: v for k, v in merged.items() if k[0] == "tether_resolution_instances"}
    assert list(instances.values()) == [3.0]  # three instances, known to both, not six


def test_process_series_stay_per_worker() -> None:
    first, second = two_workers()
    merged = samples(merge_expositions([("0", first), ("1", second)]))
    cpu = {dict(k[1])["worker"] for k in merged if k[0] == "process_cpu_seconds_total"}
    assert cpu == {"0", "1"}
    info = [dict(k[1]) for k in merged if k[0] == "python_info"]
    assert sorted(i["worker"] for i in info) == ["0", "1"]
    assert all("implementation" in i for i in info)


def test_dapr_names_and_types_are_kept() -> None:
    first, second = two_workers()
    text = merge_expositions([("0", first), ("1", second)])
    assert text.count("# TYPE dapr_http_server_request_count counter\n") == 1
    assert text.count("# TYPE dapr_runtime_service_invocation_req_sent_total counter\n") == 1
    assert "\ndapr_http_server_request_count{" in text
    assert "dapr_http_server_request_count_total" not in text
    # Families nobody has recorded into are still announced, as a lone sidecar does.
    assert "# TYPE dapr_grpc_io_server_completed_rpcs counter\n" in text


def test_one_worker_merges_to_itself_apart_from_the_worker_label() -> None:
    first, _ = two_workers()
    alone = samples(first)
    merged = samples(merge_expositions([("0", first)]))
    assert {k: v for k, v in merged.items() if not k[0].startswith(("process_", "python_"))} == {
        k: v for k, v in alone.items() if not k[0].startswith(("process_", "python_"))
    }


def test_supervisor_process_metrics_join_under_their_own_label() -> None:
    own = "# HELP process_open_fds fds\n# TYPE process_open_fds gauge\nprocess_open_fds 7.0\n"
    first, _ = two_workers()
    merged = samples(merge_expositions([("0", first), ("supervisor", own)]))
    assert merged[("process_open_fds", labels(worker="supervisor"))] == 7.0


def test_special_values_and_untyped_samples() -> None:
    a = '# TYPE g gauge\ng{x="a b}"} +Inf\nloose 1\n'
    b = '# TYPE g gauge\ng{x="a b}"} 3\nloose 2\n'
    text = merge_expositions([("0", a), ("1", b)])
    assert 'g{x="a b}"} +Inf' in text
    assert "loose 3.0" in text
    assert merge_expositions([]) == ""


def test_with_label() -> None:
    assert with_label("up", "worker", "0") == 'up{worker="0"}'
    assert with_label("up{}", "worker", "0") == 'up{worker="0"}'
    assert with_label('up{a="1"}', "worker", "2") == 'up{worker="2",a="1"}'
