from proxy.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InvokeServiceRequest(_message.Message):
    __slots__ = ("id", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    message: _common_pb2.InvokeRequest
    def __init__(self, id: _Optional[str] = ..., message: _Optional[_Union[_common_pb2.InvokeRequest, _Mapping]] = ...) -> None: ...

class GetMetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMetadataResponse(_message.Message):
    __slots__ = ("id", "active_actors_count", "registered_components", "extended_metadata", "subscriptions", "http_endpoints", "app_connection_properties", "runtime_version", "enabled_features", "resiliencies")
    class ExtendedMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ACTORS_COUNT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_METADATA_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    APP_CONNECTION_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    RESILIENCIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    active_actors_count: _containers.RepeatedCompositeFieldContainer[ActiveActorsCount]
    registered_components: _containers.RepeatedCompositeFieldContainer[RegisteredComponents]
    extended_metadata: _containers.ScalarMap[str, str]
    subscriptions: _containers.RepeatedCompositeFieldContainer[PubsubSubscription]
    http_endpoints: _containers.RepeatedCompositeFieldContainer[MetadataHTTPEndpoint]
    app_connection_properties: AppConnectionProperties
    runtime_version: str
    enabled_features: _containers.RepeatedScalarFieldContainer[str]
    resiliencies: _containers.RepeatedCompositeFieldContainer[MetadataResiliency]
    def __init__(self, id: _Optional[str] = ..., active_actors_count: _Optional[_Iterable[_Union[ActiveActorsCount, _Mapping]]] = ..., registered_components: _Optional[_Iterable[_Union[RegisteredComponents, _Mapping]]] = ..., extended_metadata: _Optional[_Mapping[str, str]] = ..., subscriptions: _Optional[_Iterable[_Union[PubsubSubscription, _Mapping]]] = ..., http_endpoints: _Optional[_Iterable[_Union[MetadataHTTPEndpoint, _Mapping]]] = ..., app_connection_properties: _Optional[_Union[AppConnectionProperties, _Mapping]] = ..., runtime_version: _Optional[str] = ..., enabled_features: _Optional[_Iterable[str]] = ..., resiliencies: _Optional[_Iterable[_Union[MetadataResiliency, _Mapping]]] = ...) -> None: ...

class ActiveActorsCount(_message.Message):
    __slots__ = ("type", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    count: int
    def __init__(self, type: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class RegisteredComponents(_message.Message):
    __slots__ = ("name", "type", "version", "capabilities")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class MetadataHTTPEndpoint(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PubsubSubscription(_message.Message):
    __slots__ = ("pubsub_name", "topic", "metadata", "dead_letter_topic")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PUBSUB_NAME_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TOPIC_FIELD_NUMBER: _ClassVar[int]
    pubsub_name: str
    topic: str
    metadata: _containers.ScalarMap[str, str]
    dead_letter_topic: str
    def __init__(self, pubsub_name: _Optional[str] = ..., topic: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., dead_letter_topic: _Optional[str] = ...) -> None: ...

class AppConnectionProperties(_message.Message):
    __slots__ = ("port", "protocol", "channel_address", "max_concurrency", "health")
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    port: int
    protocol: str
    channel_address: str
    max_concurrency: int
    health: AppConnectionHealthProperties
    def __init__(self, port: _Optional[int] = ..., protocol: _Optional[str] = ..., channel_address: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., health: _Optional[_Union[AppConnectionHealthProperties, _Mapping]] = ...) -> None: ...

class AppConnectionHealthProperties(_message.Message):
    __slots__ = ("health_check_path", "health_probe_interval", "health_probe_timeout", "health_threshold")
    HEALTH_CHECK_PATH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_PROBE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_PROBE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    health_check_path: str
    health_probe_interval: str
    health_probe_timeout: str
    health_threshold: int
    def __init__(self, health_check_path: _Optional[str] = ..., health_probe_interval: _Optional[str] = ..., health_probe_timeout: _Optional[str] = ..., health_threshold: _Optional[int] = ...) -> None: ...

class MetadataResiliency(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
