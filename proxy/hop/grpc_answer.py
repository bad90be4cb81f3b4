"""The caller's side of a gRPC app's answer (``InternalInvokeResponse`` with a status
code below 100, Dapr's ``IsHTTPResponse`` rule): the HTTP answer daprd's HTTP API
gives for it (``pkg/api/http/directmessaging.go``: the status by HTTPStatusFromCode,
headers from the app's header metadata, the data as body, or for an error the JSON of
the status), with the app's own status and metadata kept for the gRPC API
(``InvokeService`` passes them through). Pure: plain values in and out."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping

from google.protobuf import json_format

from proxy.core.body import Body
from proxy.core.grpc_status import grpc_code_name, http_status_from_grpc
from proxy.hop.call import Answer, GrpcReply, Headers, InvokeMalformed
from proxy.hop.grpc_app_rules import NOT_ANSWER_METADATA, PERMANENT_HTTP_HEADERS
from proxy.hop.header_rules import HOP_BY_HOP, has_forbidden_bytes
from proxy.protos import internals_pb2

# Never carried to the caller from the app's metadata: the sidecars' own, or set here.
_SKIPPED = frozenset(
    ("traceparent", "tracestate", "grpc-trace-bin", "destination-app-id", "content-type")
)
_PSEUDO = frozenset((":method", ":scheme", ":path", ":authority"))
# A Go server sniffs a body without a content type: a JSON status reads as text.
_SNIFFED_TEXT = b"text/plain; charset=utf-8"
_KEY = re.compile(r"[0-9a-z_.-]+")
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
# What grpc-go's server never sends as response metadata (isReservedHeader).
_RESERVED = NOT_ANSWER_METADATA


def is_grpc_status(code: int) -> bool:
    """Dapr's rule: a status code below 100 is a gRPC app's, 100 and up an HTTP status."""
    return code < 100


def grpc_answer(head: internals_pb2.InternalInvokeResponse, body: Body, target_id: str) -> Answer:
    """The answer for a gRPC app's response head and body (the data). For a status
    other than OK the body is replaced (the caller closes the one it had). Raises
    InvokeMalformed when the status's details cannot be written as JSON."""
    status = head.status
    message = head.message
    content_type = message.content_type
    if message.data.type_url:
        # daprd: a type URL makes the data protobuf, whatever the app said.
        content_type = PROTOBUF_CONTENT_TYPE
    details = b""
    if status.details:
        details = status.SerializeToString()  # the wire of google.rpc.Status
    carried, trailing = head.headers, head.trailers
    header_metadata = {key: carried[key].values for key in carried}
    reply = GrpcReply(
        code=status.code,
        message=status.message,
        details=details,
        headers=header_metadata,
        trailers={key: trailing[key].values for key in trailing},
        content_type=content_type,
        type_url=message.data.type_url,
    )
    headers = http_headers(header_metadata)
    if status.code == 0:
        if content_type:
            headers.append((b"content-type", content_type.encode("latin-1", "replace")))
        return Answer(200, headers, body, reply)
    http_status = http_status_from_grpc(grpc_code_name(status.code))
    headers.append((b"content-type", _SNIFFED_TEXT))
    return Answer(http_status, headers, Body(status_json(status, target_id)), reply)


def status_json(status: internals_pb2.Status, target_id: str) -> bytes:
    """protojson of the status ({"code","message","details"}), as daprd's body for a
    gRPC app's error. Raises InvokeMalformed for a detail of a type we cannot name."""
    if status.details:
        # The standard detail types (ErrorInfo, BadRequest, ...) registered for JSON.
        from google.rpc import error_details_pb2  # noqa: F401

    try:
        document = json_format.MessageToDict(status)
    except (TypeError, json_format.Error) as exc:
        raise InvokeMalformed(target_id, str(exc)) from exc
    return json.dumps(document, separators=(",", ":")).encode()


def http_headers(metadata: Mapping[str, Iterable[str]]) -> Headers:
    """InternalMetadataToHTTPHeader: the first value of each key, ``-bin`` keys, the
    content type and trace keys left out, gRPC's reserved names as ``dapr-<name>``."""
    out: Headers = []
    for key, values in metadata.items():
        lower = key.lower()
        first = next(iter(values), None)
        if first is None or lower in _SKIPPED or lower.endswith("-bin"):
            continue
        if lower in _PSEUDO:
            lower = "dapr-" + lower[1:]
        elif lower.startswith("grpc-"):
            lower = "dapr-" + lower
        name = lower.encode("latin-1", "replace")
        if name in HOP_BY_HOP or name == b"content-length" or has_forbidden_bytes(first):
            continue
        out.append((name, first.encode("latin-1", "replace")))
    return out


def grpc_metadata(
    metadata: Mapping[str, Iterable[str]], *, http_conversion: bool
) -> list[tuple[str, str | bytes]]:
    """InternalMetadataToGrpcMetadata: Dapr's carried metadata as gRPC metadata for the
    caller (``-bin`` values decoded to bytes; what gRPC reserves left out).
    ``http_conversion``: permanent HTTP header names become ``dapr-<name>`` (headers)."""
    out: list[tuple[str, str | bytes]] = []
    for key, values in metadata.items():
        lower = key.lower()
        if lower in _SKIPPED:
            continue
        if http_conversion and lower in PERMANENT_HTTP_HEADERS:
            lower = "dapr-" + lower
        if lower in _RESERVED or not _KEY.fullmatch(lower):
            continue
        for value in values:
            if lower.endswith("-bin"):
                try:
                    out.append((lower, base64.b64decode(value, validate=True)))
                except (binascii.Error, ValueError):
                    continue  # daprd drops a value that does not decode
            elif value.isascii() and value.isprintable():
                out.append((lower, value))
    return out
