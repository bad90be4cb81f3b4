from proxy.protos import common_pb2 as _common_pb2
from proxy.protos import internals_pb2 as _internals_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MuxFrame(_message.Message):
    __slots__ = ("call_id", "request", "response", "body_ticket", "error")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    BODY_TICKET_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    request: _internals_pb2.InternalInvokeRequest
    response: _internals_pb2.InternalInvokeResponse
    body_ticket: int
    error: _internals_pb2.Status
    def __init__(self, call_id: _Optional[int] = ..., request: _Optional[_Union[_internals_pb2.InternalInvokeRequest, _Mapping]] = ..., response: _Optional[_Union[_internals_pb2.InternalInvokeResponse, _Mapping]] = ..., body_ticket: _Optional[int] = ..., error: _Optional[_Union[_internals_pb2.Status, _Mapping]] = ...) -> None: ...

class BodyTicket(_message.Message):
    __slots__ = ("ticket",)
    TICKET_FIELD_NUMBER: _ClassVar[int]
    ticket: int
    def __init__(self, ticket: _Optional[int] = ...) -> None: ...
