"""Commands that never trace start without the OpenTelemetry SDK.

Each probe runs in a fresh interpreter, so modules a test process already
imported cannot hide an import, and reports which ``opentelemetry.sdk``
modules were loaded by the time it finished.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RESILIENCY = ROOT / "deploy" / "samples" / "resiliency.yaml"
SAMPLE_CONFIGURATION = ROOT / "deploy" / "samples" / "configuration.yaml"

_REPORT = (
    "import json, sys\n"
    "print(json.dumps(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))))\n"
)


def _sdk_modules(body: str, tmp_path: Path) -> list[str]:
    """Run ``body`` in a fresh interpreter; the opentelemetry.sdk modules it loaded."""
    script = tmp_path / "probe.py"
    script.write_text(body + _REPORT)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_importing_the_cli_and_configuration_loader_loads_no_sdk(tmp_path: Path) -> None:
    body = (
        "import proxy.cli, proxy.config.configuration, proxy.config.settings\n"
        "from pathlib import Path\n"
        "from proxy.config.configuration import load_configuration\n"
        f"load_configuration(Path({str(SAMPLE_CONFIGURATION)!r}), {{}})\n"
    )
    assert _sdk_modules(body, tmp_path) == []


def test_resiliency_check_runs_without_the_sdk(tmp_path: Path) -> None:
    body = (
        "import contextlib, io, proxy.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = proxy.cli.main(['resiliency', 'check', {str(SAMPLE_RESILIENCY)!r}])\n"
        "assert code == 0, code\n"
    )
    assert _sdk_modules(body, tmp_path) == []


def test_certs_init_runs_without_the_sdk(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    body = (
        "import contextlib, io, proxy.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = proxy.cli.main(['certs', 'init', '--dir', {str(out)!r}])\n"
        "assert code == 0, code\n"
    )
    assert _sdk_modules(body, tmp_path) == []
    assert any(out.iterdir())
