"""The soak, shortened to 60 s (``python -m bench.soak`` runs it for 10 minutes): POSTs
through a caller sidecar to two instances while their sidecars are SIGKILLed and
restarted in turn and the caller's Resiliency file is rewritten. Only the contract is
asserted, never a timing: no failure beyond what the retry contract allows, no POST
executed twice, every successful call executed once."""

from __future__ import annotations

from pathlib import Path

from bench.soak import Options, render, run_soak

# A lower rate than the real soak's 500/s: this machine is shared while tests run.
OPTIONS = Options(duration=60, rate=100, kill_every=15, rewrite_every=20, connections=64)


def test_sixty_seconds_of_kills_and_reloads_keep_the_retry_contract(tmp_path: Path) -> None:
    lines: list[str] = []
    report = run_soak(Options(**{**OPTIONS.__dict__, "workdir": tmp_path}), lines.append)
    summary = render(report)
    assert not report.problems, summary
    verdict = report.verdict
    assert verdict.calls == 6000, summary
    assert verdict.beyond == [], summary
    assert verdict.duplicates == [], summary
    assert verdict.lost == [], summary
    assert verdict.executions == verdict.succeeded + verdict.executed_failed, summary
    # The faults really happened: every kill was followed by a restart, and the
    # caller loaded each rewrite.
    assert len(report.kills) >= 3 and report.restarts == len(report.kills), summary
    assert report.rewrites >= 2 and report.loads >= report.rewrites + 1, summary
