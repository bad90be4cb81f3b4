"""The benchmark's arithmetic and verdicts, without running anything: figures of a run,
medians and spread over runs, ratios to nginx, PASS/MISS per target of issue 12."""

from __future__ import annotations

import math
from pathlib import Path

from bench import report
from bench.nginx_pair import CertPaths, Hop, nginx_config
from bench.profile_summary import frame_name, parse, top_lines
from bench.report import Result, Run, Scenario, Spread

PROXIES = {
    ("tether", "caller"): "checkout",
    ("tether", "callee"): "orders",
    ("nginx", "caller"): "nginx-a",
    ("nginx", "callee"): "nginx-b",
}


def result(name: str, target: str, p50: float, p90: float, p99: float, rps: float,
           cpu: dict[str, float] | None = None) -> Result:  # fmt: skip
    r = Result(Scenario(name, target, "http://x", 0.0, 1.0, 0.0, 0.0))
    r.latency_ms = {"p50": p50, "p90": p90, "p99": p99}
    r.completed, r.elapsed = int(rps * 10), 10.0
    r.cpu_us = cpu or {}
    return r


def a_run(tether_cpu: float = 400.0, nginx_cpu: float = 100.0, tether_p90: float = 2.2) -> Run:
    tether_cpu_us = {"checkout": tether_cpu, "orders": tether_cpu / 2, "app": 50.0}
    nginx_cpu_us = {"nginx-a": nginx_cpu, "nginx-b": nginx_cpu, "app": 50.0}
    results = {
        ("fixed", "direct"): result("fixed", "direct", 0.2, 0.3, 1.0, 1000.0),
        ("fixed", "tether"): result("fixed", "tether", 1.2, tether_p90, 5.0, 1000.0, tether_cpu_us),
        ("fixed", "nginx"): result("fixed", "nginx", 0.4, 0.5, 2.0, 1000.0, nginx_cpu_us),
        ("saturation", "direct"): result("saturation", "direct", 1.0, 1.0, 1.0, 20000.0),
        ("saturation", "tether"): result("saturation", "tether", 9.0, 9.0, 9.0, 2000.0),
        ("saturation", "nginx"): result("saturation", "nginx", 2.0, 2.0, 2.0, 8000.0),
    }
    memory = {key: ((60.0, 62.0) if key[0] == "tether" else (16.0, 16.5)) for key in PROXIES}
    return Run(results, dict(PROXIES), memory)


def test_figures_of_one_run_hold_added_latency_cpu_per_proxy_and_ratios() -> None:
    fig = report.figures(a_run())
    assert math.isclose(fig["tether.added_p90_ms"], 1.9)
    assert math.isclose(fig["nginx.added_p90_ms"], 0.2)
    assert fig["tether.cpu_us.caller"] == 400.0
    assert fig["tether.cpu_us.callee"] == 200.0
    assert fig["ratio.cpu_us.caller"] == 4.0
    assert fig["ratio.cpu_us.callee"] == 2.0
    assert fig["tether.sat_rps"] == 2000.0
    assert fig["ratio.sat_rps"] == 0.25
    assert fig["tether.peak_rss_mb.callee"] == 62.0
    assert "ratio.errors" not in fig


def test_without_nginx_there_are_no_nginx_figures_and_no_ratios() -> None:
    run = a_run()
    run.results = {k: v for k, v in run.results.items() if k[1] != "nginx"}
    run.proxies = {k: v for k, v in run.proxies.items() if k[0] != "nginx"}
    run.memory = {k: v for k, v in run.memory.items() if k[0] != "nginx"}
    fig = report.figures(run)
    assert not any(key.startswith(("nginx.", "ratio.")) for key in fig)
    verdicts = report.targets(report.summarise([fig]), 1000.0)
    assert "no nginx pair in this run" in verdicts[0].text
    assert not verdicts[0].ok  # the ratio part of the target cannot be shown: MISS


def test_ratio_needs_a_positive_known_denominator() -> None:
    assert report.ratio(3.0, 2.0) == 1.5
    assert math.isnan(report.ratio(3.0, 0.0))
    assert math.isnan(report.ratio(3.0, -0.1))
    assert math.isnan(report.ratio(math.nan, 1.0))


def test_summary_is_median_with_min_and_max_and_skips_what_a_run_missed() -> None:
    runs = [{"a": 3.0, "b": math.nan}, {"a": 1.0}, {"a": 10.0, "b": 4.0}]
    summary = report.summarise(runs)
    assert summary["a"] == Spread(3.0, 1.0, 10.0, 3)
    assert summary["b"] == Spread(4.0, 4.0, 4.0, 1)
    assert report.summarise([{"c": math.nan}])["c"].runs == 0


def test_spread_text() -> None:
    assert report.spread_text(Spread(430.4, 401.0, 1200.0, 3), 0) == "430 (401-1,200)"
    assert report.spread_text(Spread(0.5, 0.5, 0.5, 3), 3) == "0.500"
    assert report.spread_text(Spread(1.0, 1.0, 1.0, 1), 1) == "1.0"
    assert report.spread_text(None, 1) == "n/a"


def test_targets_pass_only_when_absolute_and_relative_limits_both_hold() -> None:
    good = report.targets(report.summarise([report.figures(a_run(180.0, 100.0, 1.5))]), 1000.0)
    # caller: 180 µs, 1.8x nginx; callee 90 µs; added p90 1.2 ms; saturation 2,000 (MISS);
    # peak RSS 62 MB (MISS).
    assert [v.ok for v in good] == [True, True, True, False, False, False]
    slow_vs_nginx = report.targets(report.summarise([report.figures(a_run(180.0, 60.0))]), 1e3)
    assert not slow_vs_nginx[0].ok  # 180 µs is under 200 but 3x nginx's 60
    assert "3.00x nginx's 60 µs" in slow_vs_nginx[0].text
    assert not slow_vs_nginx[2].ok  # added p90 1.9 ms
    assert slow_vs_nginx[2].line().startswith("  MISS  added latency p90")


def test_targets_judge_the_median_of_runs() -> None:
    runs = [report.figures(a_run(cpu)) for cpu in (150.0, 190.0, 900.0)]
    verdicts = report.targets(report.summarise(runs), 1000.0)
    assert verdicts[0].ok and "190 µs" in verdicts[0].text


def test_report_lines_name_every_target_and_figure() -> None:
    run = a_run()
    lines = report.run_lines(run, {"fixed": "fixed rate", "saturation": "saturation"})
    text = "\n".join(lines)
    assert "added by tether" in text and "added by nginx" in text
    assert "CPU µs per request (nginx run): nginx-a 100, nginx-b 100, app 50" in text
    summary = "\n".join(report.summary_lines(report.summarise([report.figures(run)] * 3), 3))
    assert "median of 3 runs (min-max)" in summary
    assert "tether ÷ nginx" in summary


def test_nginx_config_keeps_connections_alive_and_demands_a_client_certificate() -> None:
    certs = CertPaths(Path("/c/a.crt"), Path("/c/a.key"), Path("/c/ca.crt"), "nginx-b.x")
    inner = nginx_config(Hop("nginx-b", 2, 1, tls_in=True, tls_out=False), Path("/p"), certs)
    outer = nginx_config(Hop("nginx-a", 3, 2, tls_in=False, tls_out=True), Path("/p"), certs)
    for conf in (inner, outer):
        assert "worker_processes 1;" in conf and "access_log off;" in conf
        assert "proxy_http_version 1.1;" in conf and 'proxy_set_header Connection "";' in conf
        assert "keepalive 32;" in conf and "daemon" not in conf  # daemon off: on the command
    assert "listen 127.0.0.1:2 ssl;" in inner and "ssl_verify_client on;" in inner
    assert "proxy_pass http://next_hop;" in inner
    assert "proxy_pass https://next_hop;" in outer and "proxy_ssl_verify on;" in outer
    assert "proxy_ssl_certificate /c/a.crt;" in outer and "proxy_ssl_session_reuse on;" in outer


def test_profile_summary_merges_lines_and_counts_a_frame_once_per_stack() -> None:
    lines = [
        "run (asyncio/runners.py:118);f (/w/proxy/edge/x.py:5);g (/w/proxy/edge/x.py:9) 6\n",
        "run (asyncio/runners.py:118);f (/w/proxy/edge/x.py:7);f (/w/proxy/edge/x.py:8) 4\n",
        "garbage\n",
    ]
    shares = parse(lines)
    assert shares.samples == 10
    assert shares.self_counts["g (proxy/edge/x.py)"] == 6
    assert shares.self_counts["f (proxy/edge/x.py)"] == 4
    assert shares.inclusive_counts["f (proxy/edge/x.py)"] == 10
    assert frame_name("h (/x/site-packages/h11/_conn.py:3)") == "h (h11/_conn.py)"


def test_profile_summary_keeps_relative_paths_and_names_native_time() -> None:
    assert frame_name("Runner.run (asyncio/runners.py:118)") == "Runner.run (asyncio/runners.py)"
    lines = top_lines(parse(["Runner.run (asyncio/runners.py:118) 3\n"]), 5)
    assert any("100.0%" in line and "uvloop" in line for line in lines)


def test_the_python_floor_pair_gets_its_own_figures_and_column() -> None:
    run = a_run()
    run.results[("fixed", "floor")] = result(
        "fixed", "floor", 0.5, 0.9, 2.0, 1000.0, {"floor-a": 190.0, "floor-b": 180.0}
    )
    run.proxies[("floor", "caller")], run.proxies[("floor", "callee")] = "floor-a", "floor-b"
    fig = report.figures(run)
    assert fig["floor.cpu_us.caller"] == 190.0
    assert math.isclose(fig["floor.added_p90_ms"], 0.6)
    assert "ratio.cpu_us.caller" in fig and fig["ratio.cpu_us.caller"] == 4.0  # to nginx still
    summary = report.summary_lines(report.summarise([fig]), 1)
    assert "Python floor" in summary[1]
    caller_row = next(line for line in summary if "caller proxy, fixed rate" in line)
    assert caller_row.split()[-1] == "190"
