"""The pipe by which ``tether run`` learns its sidecar is ready, across a real fork."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from proxy.ready_signal import ENV, ReadyPipe, announce_ready

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _child(pipe: ReadyPipe, code: str) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env=pipe.child_env({**os.environ, "PYTHONPATH": ROOT}),
            pass_fds=(pipe.write_fd,),
        )
    finally:
        pipe.started()


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("from proxy.ready_signal import announce_ready; announce_ready()", True),
        ("raise SystemExit(1)", False),  # died before it was ready
    ],
)
def test_the_runner_hears_ready_or_the_end(code: str, said: bool) -> None:
    pipe = ReadyPipe()
    child = _child(pipe, code)
    try:
        answer = None
        for _ in range(200):  # at most 20 s
            answer = pipe.wait(0.1)
            if answer is not None:
                break
        assert answer is said
    finally:
        child.kill()
        child.wait()
        pipe.close()


def test_a_silent_child_is_not_ready_yet() -> None:
    pipe = ReadyPipe()
    child = _child(pipe, "import time; time.sleep(30)")
    try:
        assert pipe.wait(0.05) is None
    finally:
        child.kill()
        child.wait()
        pipe.close()


def test_announcing_without_a_runner_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    announce_ready()
    monkeypatch.setenv(ENV, "not-a-descriptor")
    announce_ready()
    assert ENV not in os.environ  # workers started later do not inherit it
