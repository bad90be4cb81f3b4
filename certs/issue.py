"""Issuing this sidecar's workload identity in a short-lived child process.

Building a key and a certificate needs cryptography, which costs a process about
11 MB of resident memory (7.5 MB to import it, 3 MB more once OpenSSL has made a
key) that it keeps for good: extension modules are never unloaded. A sidecar
needs the certificate once, at start-up, so a child process
(``python -m certs.issue``) builds it and hands back the PEM bytes gRPC takes;
the sidecar itself never imports cryptography. The cost is one interpreter start
(about 0.2-0.3 s of CPU) at start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
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
        }
    )


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
            )
    except (ValueError, KeyError, TypeError, AttributeError, CertError) as exc:
        message = f"issuing the workload certificate failed: {exc}"
    # The child's own CertError, word for word (it names the fix, e.g. tether certs init).
    raise CertError(message)


async def issue_in_child(certs_dir: Path, spiffe_id: SpiffeId) -> WorkloadIdentity:
    """A fresh identity for ``spiffe_id`` from the issuer in ``certs_dir``, built by a child."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    argv = [str(certs_dir), spiffe_id.trust_domain, spiffe_id.namespace, spiffe_id.app_id]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "certs.issue",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await child.communicate()
    if child.returncode != 0 and not out.strip():
        detail = err.decode(errors="replace").strip().splitlines()
        raise CertError(
            f"issuing the workload certificate failed (exit {child.returncode})"
            + (f": {detail[-1]}" if detail else "")
        )
    return decode(out.decode("ascii", errors="replace"))


def main(argv: Sequence[str]) -> int:
    """``python -m certs.issue CERTS_DIR TRUST_DOMAIN NAMESPACE APP_ID``: one JSON line out."""
    from certs.authority import load_issuer
    from certs.workload import issue_workload_identity

    certs_dir, trust_domain, namespace, app_id = argv
    now = datetime.now(UTC)
    try:
        spiffe_id = SpiffeId(trust_domain, namespace, app_id)
        identity = issue_workload_identity(load_issuer(Path(certs_dir), now), spiffe_id, now)
    except CertError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(encode(identity))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
