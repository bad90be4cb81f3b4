"""An ``Invocation`` becomes Dapr's ``InternalInvokeRequest``: the caller's
headers turned into metadata by the header rules, plus the HTTP extension."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from proxy.hop.call import NO_VERB, Invocation
from proxy.hop.header_rules import CallerIdentity, first_value, outbound_metadata
from proxy.protos import common_pb2, internals_pb2

# tether extension (attemptHeader: true): lets the app see that a call is a retry.
ATTEMPT_HEADER = "tether-attempt"

# Verbs the HTTP extension names, with their numbers; anything else travels as
# POST (Dapr's rule).
_VERBS: dict[str, common_pb2.HTTPExtension.Verb] = {
    name: cast(common_pb2.HTTPExtension.Verb, number)
    for name, number in common_pb2.HTTPExtension.Verb.items()
    if name != "NONE"
}
_POST = common_pb2.HTTPExtension.POST


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
    content_type = first_value(call.headers, b"content-type")
    # Filled in place: building a ListStringValue per header and a dict of them for
    # the constructor (which copies each again) cost twice as much per call.
    request = internals_pb2.InternalInvokeRequest(ver=internals_pb2.V1)
    carried = request.metadata
    for key, values in metadata.items():
        carried[key].values.extend(values)
    message = request.message
    message.method = call.method
    if content_type:
        message.content_type = content_type.decode("latin-1")
    if call.verb != NO_VERB:
        extension = message.http_extension
        extension.verb = _VERBS.get(call.verb, _POST)
        extension.querystring = call.query
    return request


def with_attempt(
    message: internals_pb2.InternalInvokeRequest, attempt: int
) -> internals_pb2.InternalInvokeRequest:
    """A copy of ``message`` that tells the app which attempt this is."""
    outgoing = internals_pb2.InternalInvokeRequest()
    outgoing.CopyFrom(message)
    outgoing.metadata[ATTEMPT_HEADER].values.append(str(attempt))
    return outgoing
