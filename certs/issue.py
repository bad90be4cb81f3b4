"""Issuing this sidecar's workload identity in a short-lived child process.

Building a key and a certificate needs cryptography, which costs a process about
11 MB of resident memory (7.5 MB to import it, 3 MB more once OpenSSL has made a
key) that it keeps for good: extension modules are never unloaded. So a child
process builds each certificate (at start-up and at every renewal) and hands back
the PEM bytes gRPC takes; the sidecar itself never imports cryptography. The cost
is one interpreter start per certificate (measured in the README's rotation notes).

The request goes to the child as one JSON object on stdin (never argv, where a
Sentry token would show in ``ps``); the answer comes back as one JSON line.
This module's own child (``python -m certs.issue``) signs from the local CA's
folder; ``run_child`` runs any such child (the Sentry client is another).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from certs.errors import CertError
from certs.identity import WorkloadIdentity
from certs.spiffe import SpiffeId

# The certs package's parent directory, so the child finds this very package
# whatever way the parent was started (source tree, PYTHONPATH, installed).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def encode(identity: WorkloadIdentity) -> str:
    """One JSON line for the pipe (PEM is ASCII)."""
    return json.dumps(
        {
            "spiffe_id": str(identity.spiffe_id),
            "private_key_pem": identity.private_key_pem.decode("ascii"),
            "certificate_chain_pem": identity.certificate_chain_pem.decode("ascii"),
            "trust_bundle_pem": identity.trust_bundle_pem.decode("ascii"),
            "not_after": identity.not_after.isoformat(),
            "not_before": identity.not_before.isoformat(),
        }
    )


def encode_error(message: str) -> str:
    """The child's one-line answer when it has no identity to give."""
    return json.dumps({"error": message})


def decode(text: str) -> WorkloadIdentity:
    """The identity ``encode`` wrote; a CertError if it is not one (or the child's error)."""
    try:
        fields = json.loads(text)
        if "error" in fields:
            message = str(fields["error"])
        else:
            return WorkloadIdentity(
                spiffe_id=SpiffeId.parse(fields["spiffe_id"]),
                private_key_pem=fields["private_key_pem"].encode("ascii"),
                certificate_chain_pem=fields["certificate_chain_pem"].encode("ascii"),
                trust_bundle_pem=fields["trust_bundle_pem"].encode("ascii"),
                not_after=datetime.fromisoformat(fields["not_after"]),
                not_before=datetime.fromisoformat(fields["not_before"]),
            )
    except (ValueError, KeyError, TypeError, AttributeError, CertError) as exc:
        message = f"issuing the workload certificate failed: {exc}"
    # The child's own CertError, word for word (it names the fix, e.g. tether certs init).
    raise CertError(message)


async def run_child(module: str, request: Mapping[str, object]) -> WorkloadIdentity:
    """Run ``python -m module`` with ``request`` on stdin; its identity, or a CertError."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await child.communicate(json.dumps(request).encode())
    except asyncio.CancelledError:
        # A sidecar stopping mid-renewal: leave no child behind.
        if child.returncode is None:
            child.kill()
            await child.wait()
        raise
    if child.returncode != 0 and not out.strip():
        detail = err.decode(errors="replace").strip().splitlines()
        raise CertError(
            f"issuing the workload certificate failed (exit {child.returncode})"
            + (f": {detail[-1]}" if detail else "")
        )
    return decode(out.decode("ascii", errors="replace"))


async def issue_in_child(
    certs_dir: Path,
    spiffe_id: SpiffeId,
    ttl: timedelta = timedelta(hours=24),
    clock_skew: timedelta = timedelta(minutes=15),
) -> WorkloadIdentity:
    """A fresh identity for ``spiffe_id`` from the issuer in ``certs_dir``, built by a child."""
    request = {
        "certs_dir": str(certs_dir),
        "trust_domain": spiffe_id.trust_domain,
        "namespace": spiffe_id.namespace,
        "app_id": spiffe_id.app_id,
        "ttl": ttl.total_seconds(),
        "clock_skew": clock_skew.total_seconds(),
    }
    return await run_child("certs.issue", request)


def main(request_text: str) -> int:
    """``python -m certs.issue`` with the JSON request on stdin: one JSON line out."""
    from certs.authority import load_issuer
    from certs.workload import issue_workload_identity

    try:
        request = json.loads(request_text)
        spiffe_id = SpiffeId(request["trust_domain"], request["namespace"], request["app_id"])
        now = datetime.now(UTC)
        identity = issue_workload_identity(
            load_issuer(Path(request["certs_dir"]), now),
            spiffe_id,
            now,
            ttl=timedelta(seconds=float(request["ttl"])),
            clock_skew=timedelta(seconds=float(request["clock_skew"])),
        )
    except CertError as exc:
        print(encode_error(str(exc)))
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        print(encode_error(f"issuing the workload certificate failed: bad request: {exc}"))
        return 1
    print(encode(identity))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.stdin.read()))
