"""Full gRPC method names of the sidecar hop, as metrics and spans label them.
tether's multiplexed calls share one stream, so they get one logical name."""

CALL_LOCAL = "/dapr.proto.internals.v1.ServiceInvocation/CallLocal"
CALL_LOCAL_STREAM = "/dapr.proto.internals.v1.ServiceInvocation/CallLocalStream"
MUX_CALL = "/tether.internal.v1.Multiplex/Call"
# The methods the internal server hosts besides CallLocal and CallLocalStream.
MUX_CONNECT = "/tether.internal.v1.Multiplex/Connect"
MUX_FETCH_BODY = "/tether.internal.v1.Multiplex/FetchBody"
