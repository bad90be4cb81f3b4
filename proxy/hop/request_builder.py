"""An ``Invocation`` becomes Dapr's ``InternalInvokeRequest``: the caller's
headers turned into metadata by the header rules, plus the HTTP extension."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.hop.call import Invocation
from proxy.hop.header_rules import CallerIdentity, first_value, outbound_metadata
from proxy.protos import common_pb2, internals_pb2

# tether extension (attemptHeader: true): lets the app see that a call is a retry.
ATTEMPT_HEADER = "tether-attempt"

# Verbs the HTTP extension names; anything else travels as POST (Dapr's rule).
_VERBS = frozenset(common_pb2.HTTPExtension.Verb.keys()) - {"NONE"}


@dataclass(frozen=True, slots=True)
class Locality:
    """Who and where this sidecar is, as outbound calls carry it."""

    identity: CallerIdentity
    trust_domain: str
    host_ip: str
    hostname: str


def internal_request(
    call: Invocation, callee_app_id: str, here: Locality
) -> internals_pb2.InternalInvokeRequest:
    """The request without its body (the transport carries the body beside it)."""
    metadata = outbound_metadata(
        call.headers,
        caller=here.identity,
        callee_app_id=callee_app_id,
        host_ip=here.host_ip,
        hostname=here.hostname,
        drop=call.id_header,
    )
    body = call.body
    if "Content-Length" not in metadata and body.complete:
        # Lets the callee see at once that the first message holds the whole body.
        metadata["Content-Length"] = [str(len(body.head))]
    content_type = (first_value(call.headers, b"content-type") or b"").decode("latin-1")
    return internals_pb2.InternalInvokeRequest(
        ver=internals_pb2.V1,
        metadata={k: internals_pb2.ListStringValue(values=v) for k, v in metadata.items()},
        message=common_pb2.InvokeRequest(
            method=call.method,
            content_type=content_type,
            http_extension=common_pb2.HTTPExtension(
                verb=call.verb if call.verb in _VERBS else "POST",
                querystring=call.query,
            ),
        ),
    )


def with_attempt(
    message: internals_pb2.InternalInvokeRequest, attempt: int
) -> internals_pb2.InternalInvokeRequest:
    """A copy of ``message`` that tells the app which attempt this is."""
    outgoing = internals_pb2.InternalInvokeRequest()
    outgoing.CopyFrom(message)
    outgoing.metadata[ATTEMPT_HEADER].values.append(str(attempt))
    return outgoing
