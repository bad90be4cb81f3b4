"""A workload identity as plain bytes: what gRPC's TLS credentials take.

Kept apart from ``certs.workload`` (which builds one with cryptography) so that
a process can hold and use an identity without loading cryptography.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from certs.spiffe import SpiffeId


@dataclass(frozen=True)
class WorkloadIdentity:
    spiffe_id: SpiffeId
    private_key_pem: bytes
    certificate_chain_pem: bytes  # leaf first, then the issuer chain
    trust_bundle_pem: bytes  # the roots a peer's chain must end at
    not_after: datetime
    # The leaf's NotBefore (issue time minus the allowed clock skew): with not_after it
    # gives the lifetime that renewal timing is measured against (certs.renewal).
    not_before: datetime
