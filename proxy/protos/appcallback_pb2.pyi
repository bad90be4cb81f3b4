from google.protobuf import empty_pb2 as _empty_pb2
from proxy.protos import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class HealthCheckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
