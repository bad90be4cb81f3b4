"""Where the metrics port binds by default: daprd's 0.0.0.0 for `tether sidecar`,
loopback for `tether run` (one machine, one app); a flag always wins."""

from __future__ import annotations

import pytest

from proxy.cli import build_parser, settings_from_args


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sidecar", "--app-id", "a"], "0.0.0.0"),
        (["run", "--app-id", "a"], "127.0.0.1"),
        (["run", "--app-id", "a", "--metrics-listen-address", "0.0.0.0"], "0.0.0.0"),
        (["sidecar", "--app-id", "a", "--metrics-listen-address", "127.0.0.1"], "127.0.0.1"),
    ],
)
def test_metrics_bind_address(argv: list[str], expected: str) -> None:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, {}, mtls_default=args.command == "run")
    assert settings.metrics_listen_address == expected
