"""The gRPC benchmark's arithmetic and text, without running anything: figures of a run
(added latency against each target's reference, CPU per sidecar, RSS), medians over
runs, "not available" for a target that could not be measured; the InvokeService
request its load client sends."""

from __future__ import annotations

import math

from bench import grpc_report
from bench.grpc_load import invoke_request
from bench.report import Result, Scenario, summarise
from proxy.protos import common_pb2, runtime_pb2


def result(key: str, p50: float, p90: float, p99: float, cpu: dict[str, float]) -> Result:
    r = Result(Scenario("fixed", key, "x", 500.0, 10.0, 1.0, 500.0))
    r.latency_ms = {"p50": p50, "p90": p90, "p99": p99}
    r.completed, r.elapsed = 5000, 10.0
    r.cpu_us = cpu
    return r


def unavailable(key: str, why: str) -> Result:
    return Result(Scenario("fixed", key, "", 500.0, 10.0, 0.0, 0.0), problem=why)


SIDECARS = {"checkout": 300.0, "orders": 250.0, "greeter": 200.0}
MEMORY = {"checkout": (40.0, 42.0), "orders": (38.0, 39.0), "greeter": (37.0, 37.5)}


def a_run(shift: float = 0.0) -> dict[str, Result]:
    return {
        "direct": result("direct", 1.0, 2.0, 4.0, {"grpc-app": 700.0}),
        "proxy": result("proxy", 2.0 + shift, 3.5, 9.0, SIDECARS),
        "invoke": result("invoke", 3.0, 5.0, 12.0, SIDECARS),
        "direct_http": result("direct_http", 0.3, 0.5, 1.0, {}),
        "http_api": result("http_api", 1.3, 2.0, 5.0, SIDECARS),
    }


def test_figures_hold_added_latency_against_each_reference_cpu_per_sidecar_and_rss() -> None:
    fig = grpc_report.figures(a_run(), MEMORY)
    assert math.isclose(fig["proxy.added_p50_ms"], 1.0)
    assert math.isclose(fig["proxy.added_p99_ms"], 5.0)
    assert math.isclose(fig["invoke.added_p90_ms"], 3.0)
    assert math.isclose(fig["http_api.added_p50_ms"], 1.0)  # against direct HTTP
    # The callee of gRPC proxying is the gRPC app's sidecar, of InvokeService the HTTP one's.
    assert (fig["proxy.cpu_us.caller"], fig["proxy.cpu_us.callee"]) == (300.0, 200.0)
    assert (fig["invoke.cpu_us.caller"], fig["invoke.cpu_us.callee"]) == (300.0, 250.0)
    assert fig["proxy.rps"] == 500.0
    assert fig["rss_mb.greeter"] == 37.0
    assert fig["peak_rss_mb.checkout"] == 42.0
    assert "direct.added_p50_ms" not in fig  # a reference adds nothing
    assert "direct.cpu_us.caller" not in fig


def test_a_target_that_could_not_run_has_no_figures_and_no_added_latency_against_it() -> None:
    results = a_run()
    results["proxy"] = unavailable("proxy", "the greeter sidecar did not start")
    results["direct_http"] = unavailable("direct_http", "loadgen failed")
    fig = grpc_report.figures(results, MEMORY)
    assert not [key for key in fig if key.startswith("proxy.")]
    assert "http_api.p50_ms" in fig
    assert "http_api.added_p50_ms" not in fig


def test_the_summary_gives_medians_and_says_what_was_not_available() -> None:
    runs = []
    for shift in (0.0, 1.0, 0.5):
        results = a_run(shift)
        runs.append(grpc_report.figures(results, MEMORY))
    summary = summarise(runs)
    text = "\n".join(grpc_report.summary_lines(summary, 3, {}, ("checkout", "greeter")))
    assert "median of 3 runs (min-max)" in text
    assert "added vs direct gRPC:" in text
    assert "1.500 (1.000-2.000)" in text  # proxy's added p50 over the three runs
    assert "caller sidecar (checkout) 300, callee sidecar (greeter) 200" in text
    assert "checkout 40.0 (peak 42.0), greeter 37.0 (peak 37.5)" in text

    why = "the greeter sidecar did not start (exited with 2: --app-protocol grpc refused)"
    results = a_run()
    results["proxy"] = unavailable("proxy", why)
    one = summarise([grpc_report.figures(results, MEMORY)])
    lines = grpc_report.summary_lines(one, 1, {"proxy": why}, ("checkout",))
    proxy_at = lines.index(f"  {grpc_report.BY_KEY['proxy'].label}")
    assert lines[proxy_at + 1] == f"      not available: {why}"
    assert "== summary: one run ==" in lines


def test_a_run_prints_a_row_per_target_and_why_one_is_missing() -> None:
    results = a_run()
    results["proxy"] = unavailable("proxy", "no gRPC proxying")
    lines = grpc_report.run_lines(results, MEMORY)
    assert "  proxy        not available: no gRPC proxying" in lines
    invoke = next(i for i, line in enumerate(lines) if line.startswith("  invoke "))
    assert lines[invoke + 1].split()[:4] == ["added", "2.000", "3.000", "8.000"]
    assert "  greeter sidecar RSS: 37.0 MB now, 37.5 MB peak" in lines


def test_the_load_client_sends_invoke_service_as_an_sdk_does() -> None:
    request = runtime_pb2.InvokeServiceRequest.FromString(invoke_request("orders", b"x" * 1024))
    assert request.id == "orders"
    assert request.message.method == "bench"
    assert request.message.http_extension.verb == common_pb2.HTTPExtension.Verb.POST
    assert request.message.data.value == b"x" * 1024
    assert request.message.content_type == "application/octet-stream"
