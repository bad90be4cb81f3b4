"""The commands that work on files and exit: ``certs init``, ``resiliency check`` and
``config check``. Each prints what it found and returns the exit code."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from proxy.core.errors import UsageError
from resiliency import load_resiliency, summarize


def certs_init(args: argparse.Namespace) -> int:
    # Only this command and an mTLS sidecar build certificates (cryptography: ~8 MB).
    from certs.authority import create_authority, write_authority

    directory = Path(args.dir).expanduser()
    files = create_authority(args.trust_domain, datetime.now(UTC))
    write_authority(directory, files, overwrite=args.force)
    print(f"wrote ca.crt, issuer.crt and issuer.key to {directory}")
    return 0


def resiliency_check(files: list[str]) -> int:
    """Every problem as ``FILE: field.path: what is wrong`` (exit 1), or a summary (exit 0)."""
    missing = [name for name in files if not Path(name).exists()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file or folder")
    config, report = load_resiliency(files)
    for note in report.notes:
        print(f"note: {note}")
    if not report.ok:
        for line in report.lines():
            print(line, file=sys.stderr)
        count = len(report.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    if not config.resource_names:
        print("no Resiliency documents found")
        return 1
    print(f"ok: {', '.join(config.resource_names)}")
    for line in summarize(config):
        print(f"  {line}")
    return 0


def config_check(files: list[str]) -> int:
    """Like ``resiliency check``: every problem of every file (exit 1), or summaries (exit 0)."""
    from proxy.config.configuration_check import check_configurations

    missing = [name for name in files if not Path(name).is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: no such file")
    report = check_configurations([Path(name) for name in files])
    for note in report.notes:
        print(f"note: {note}")
    if report.problems:
        for line in report.problems:
            print(line, file=sys.stderr)
        count = len(report.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return 1
    for line in report.summary:
        print(line)
    return 0
