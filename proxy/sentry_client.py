"""This sidecar's workload certificate from a Sentry (Dapr's
``dapr.proto.sentry.v1.CA/SignCertificate``), asked for in a short-lived child
process (``python -m proxy.sentry_client``) that makes the key and the CSR, so the
sidecar never loads cryptography (see certs.issue) and never holds a CA key.

The child pins Sentry by the DNS SAN of its whole SPIFFE ID (``SpiffeId.exact_name()``),
verifying its chain against ``DAPR_TRUST_ANCHORS``. Like daprd, it retries a
Sentry that is unreachable or overloaded (UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED) a few times with a growing pause; a refusal
(PERMISSION_DENIED, INVALID_ARGUMENT, ...) is final and reported word for word.
"""

from __future__ import annotations

import json
import sys
import time

from certs.errors import CertError
from certs.identity import WorkloadIdentity
from certs.issue import encode, encode_error, run_child
from certs.spiffe import SpiffeId
from proxy.config.sentry_settings import SentrySettings

CALL_TIMEOUT = 3.0  # seconds per attempt, as daprd
START_ATTEMPTS = 5  # at start-up: 5 tries, pauses 0.5, 1, 2, 4 s (about 20 s at most)
RENEWAL_ATTEMPTS = 1  # at renewal the renewal loop retries (certs.renewal)
_RETRIED = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


async def request_in_child(
    sentry: SentrySettings, spiffe_id: SpiffeId, attempts: int
) -> WorkloadIdentity:
    """A fresh identity for ``spiffe_id`` signed by Sentry; CertError with the reason."""
    token = ""
    if sentry.token_file is not None:
        try:
            token = sentry.token_file.read_text().strip()
        except OSError as exc:
            raise CertError(
                f"DAPR_SENTRY_TOKEN_FILE: cannot read {sentry.token_file}: {exc.strerror or exc}"
            ) from exc
    request = {
        "address": sentry.address,
        "trust_anchors": sentry.trust_anchors_pem.decode("ascii"),
        "sentry_id": str(sentry.sentry_id),
        "spiffe_id": str(spiffe_id),
        "token": token,
        "attempts": attempts,
    }
    return await run_child("proxy.sentry_client", request)


def _ask(request: dict[str, object]) -> WorkloadIdentity:
    import grpc

    from certs.csr import check_leaf, new_key_and_csr
    from certs.workload import with_newline
    from proxy.protos import sentry_pb2, sentry_pb2_grpc

    address = str(request["address"])
    anchors = str(request["trust_anchors"]).encode("ascii")
    spiffe_id = SpiffeId.parse(str(request["spiffe_id"]))
    token = str(request["token"])
    attempts = max(int(str(request["attempts"])), 1)
    key_pem, csr_pem = new_key_and_csr(spiffe_id)
    validator = sentry_pb2.SignCertificateRequest
    message = sentry_pb2.SignCertificateRequest(
        id=spiffe_id.app_id,
        token=token,
        trust_domain=spiffe_id.trust_domain,
        namespace=spiffe_id.namespace,
        certificate_signing_request=csr_pem,
        # As daprd self-hosted: the insecure validator only when there is no token.
        token_validator=validator.UNKNOWN if token else validator.INSECURE,
    )
    # Sentry's whole SPIFFE ID, trust domain included (its certificate carries this name).
    sentry_name = SpiffeId.parse(str(request["sentry_id"])).exact_name()
    options = [
        ("grpc.ssl_target_name_override", sentry_name),
        ("grpc.default_authority", sentry_name),
    ]
    credentials = grpc.ssl_channel_credentials(root_certificates=anchors)
    started = time.monotonic()
    pause = 0.5
    for attempt in range(1, attempts + 1):
        with grpc.secure_channel(address, credentials, options=options) as channel:
            try:
                answer = sentry_pb2_grpc.CAStub(channel).SignCertificate(
                    message, timeout=CALL_TIMEOUT
                )
                break
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() is not None else "UNKNOWN"
                details = (exc.details() or code.lower()).replace("\n", " ")
                if code not in _RETRIED:
                    raise CertError(
                        f"Sentry at {address} refused the certificate ({code}): {details}"
                    ) from exc
                if attempt == attempts:
                    tries = f" (tried {attempts} times over {time.monotonic() - started:.0f}s)"
                    raise CertError(
                        f"cannot get a workload certificate from Sentry at {address}: "
                        f"{details}{tries if attempts > 1 else ''}"
                    ) from exc
        time.sleep(pause)
        pause *= 2
    chain = with_newline(bytes(answer.workload_certificate))
    if not chain.strip():
        raise CertError(f"Sentry at {address} answered without a certificate")
    lifetime = check_leaf(chain, key_pem, spiffe_id)  # the first certificate is the leaf
    if chain.count(b"-----BEGIN CERTIFICATE-----") == 1:
        # Dapr's Sentry before 1.10 sent the leaf alone and the issuer chain beside it;
        # since then (and tether's) the leaf with its chain, and the anchors beside it.
        chain += b"".join(with_newline(bytes(pem)) for pem in answer.trust_chain_certificates)
    return WorkloadIdentity(
        spiffe_id=spiffe_id,
        private_key_pem=key_pem,
        certificate_chain_pem=chain,
        trust_bundle_pem=anchors,
        not_after=lifetime.not_after,
        not_before=lifetime.not_before,
    )


def main(request_text: str) -> int:
    """The child: the JSON request on stdin, one JSON line out."""
    try:
        identity = _ask(json.loads(request_text))
    except CertError as exc:
        print(encode_error(str(exc)))
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        print(encode_error(f"asking Sentry for the workload certificate failed: {exc}"))
        return 1
    print(encode(identity))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.stdin.read()))
