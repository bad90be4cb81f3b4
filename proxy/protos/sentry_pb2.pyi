import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignCertificateRequest(_message.Message):
    __slots__ = ("id", "token", "trust_domain", "namespace", "certificate_signing_request", "token_validator", "jwt_audiences")
    class TokenValidator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[SignCertificateRequest.TokenValidator]
        INSECURE: _ClassVar[SignCertificateRequest.TokenValidator]
        KUBERNETES: _ClassVar[SignCertificateRequest.TokenValidator]
        JWKS: _ClassVar[SignCertificateRequest.TokenValidator]
    UNKNOWN: SignCertificateRequest.TokenValidator
    INSECURE: SignCertificateRequest.TokenValidator
    KUBERNETES: SignCertificateRequest.TokenValidator
    JWKS: SignCertificateRequest.TokenValidator
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SIGNING_REQUEST_FIELD_NUMBER: _ClassVar[int]
    TOKEN_VALIDATOR_FIELD_NUMBER: _ClassVar[int]
    JWT_AUDIENCES_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: str
    trust_domain: str
    namespace: str
    certificate_signing_request: bytes
    token_validator: SignCertificateRequest.TokenValidator
    jwt_audiences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., token: _Optional[str] = ..., trust_domain: _Optional[str] = ..., namespace: _Optional[str] = ..., certificate_signing_request: _Optional[bytes] = ..., token_validator: _Optional[_Union[SignCertificateRequest.TokenValidator, str]] = ..., jwt_audiences: _Optional[_Iterable[str]] = ...) -> None: ...

class SignCertificateResponse(_message.Message):
    __slots__ = ("workload_certificate", "trust_chain_certificates", "valid_until", "jwt")
    WORKLOAD_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    TRUST_CHAIN_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    JWT_FIELD_NUMBER: _ClassVar[int]
    workload_certificate: bytes
    trust_chain_certificates: _containers.RepeatedScalarFieldContainer[bytes]
    valid_until: _timestamp_pb2.Timestamp
    jwt: str
    def __init__(self, workload_certificate: _Optional[bytes] = ..., trust_chain_certificates: _Optional[_Iterable[bytes]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., jwt: _Optional[str] = ...) -> None: ...
