"""A plain grpcio service (greeter.proto) for the gRPC proxying tests: all four call
kinds, an error with rich details, and a call that waits for its deadline or its
cancellation. Every call is logged as one JSON line: the method, the metadata it
received, its deadline as it saw it, and how a waiting call ended.

Usage: python greeter.py PORT LOG_PATH
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf import wrappers_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

SERVICE = "tether.test.Greeter"
Text = wrappers_pb2.StringValue

_lock = threading.Lock()


def log(path: str, entry: dict[str, object]) -> None:
    with _lock, open(path, "a") as out:
        out.write(json.dumps(entry) + "\n")


def shown(metadata: tuple[tuple[str, str | bytes], ...]) -> list[list[str]]:
    return [[k, v.hex() if isinstance(v, bytes) else v] for k, v in metadata]


class Greeter:
    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.failures: dict[str, int] = {}  # Flaky: failures still to give, by key

    def _seen(
        self, method: str, context: grpc.ServicerContext, *, answer: bool = True, **extra: object
    ) -> None:
        remaining = context.time_remaining()
        entry: dict[str, object] = {
            "method": method,
            "metadata": shown(context.invocation_metadata()),
            # grpcio says None without a deadline (some versions: a huge number).
            "time_remaining": remaining if remaining is not None and remaining < 1e6 else None,
            **extra,
        }
        log(self.log_path, entry)
        if not answer:
            return
        context.send_initial_metadata(
            (("x-app-initial", "hello"), ("x-initial-bin", b"\x00\x01\xfe"))
        )
        context.set_trailing_metadata((("x-app-trailing", "bye"), ("x-trailing-bin", b"\xff\x00")))

    def say_hello(self, request: Text, context: grpc.ServicerContext) -> Text:
        self._seen("SayHello", context, request=request.value[:100], size=len(request.value))
        return Text(value=f"hello {request.value}")

    def say_hellos(self, request: Text, context: grpc.ServicerContext) -> Iterator[Text]:
        self._seen("SayHellos", context, request=request.value)
        name, _, count = request.value.partition(":")
        for index in range(int(count or "3")):
            yield Text(value=f"{name} {index}")

    def collect_hellos(self, requests: Iterator[Text], context: grpc.ServicerContext) -> Text:
        flaky = dict(context.invocation_metadata()).get("x-flaky")
        if isinstance(flaky, str):
            # As Flaky, before reading a message: a retry must send them all again.
            self._seen("CollectHellos.try", context, answer=False, request=flaky)
            key, _, count = flaky.partition(":")
            with _lock:
                left = self.failures.setdefault(key, int(count or "0"))
                self.failures[key] = left - 1
            if left > 0:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"flaky {key}")
        names = [r.value for r in requests]
        self._seen("CollectHellos", context, count=len(names))
        return Text(value="+".join(names))

    def chat(self, requests: Iterator[Text], context: grpc.ServicerContext) -> Iterator[Text]:
        self._seen("Chat", context)
        for request in requests:
            yield Text(value=request.value.upper())

    def fail(self, request: Text, context: grpc.ServicerContext) -> Text:
        self._seen("Fail", context)
        status = status_pb2.Status(
            code=code_pb2.FAILED_PRECONDITION, message=f"no greeting for {request.value}"
        )
        status.details.add().Pack(
            error_details_pb2.ErrorInfo(
                reason="NO_GREETING", domain="greeter.test", metadata={"name": request.value}
            )
        )
        context.set_trailing_metadata(
            (("grpc-status-details-bin", status.SerializeToString()), ("x-app-trailing", "bye"))
        )
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, status.message)

    def flaky(self, request: Text, context: grpc.ServicerContext) -> Text:
        """ "key:N": the first N calls with this key fail UNAVAILABLE, the rest answer."""
        self._seen("Flaky", context, request=request.value)
        key, _, count = request.value.partition(":")
        with _lock:
            left = self.failures.setdefault(key, int(count or "0"))
            self.failures[key] = left - 1
        if left > 0:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"flaky {key}: {left} failures left")
        return Text(value=f"steady {key}")

    def ticks(self, request: Text, context: grpc.ServicerContext) -> Iterator[Text]:
        """ "N:S": N messages, S seconds apart; "N:S:fail": then UNAVAILABLE."""
        self._seen("Ticks", context, request=request.value)
        count, _, rest = request.value.partition(":")
        pause, _, fail = rest.partition(":")
        for index in range(int(count)):
            if index:
                time.sleep(float(pause or "0"))
            yield Text(value=f"tick {index}")
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "ticks failed after answering")

    def wait(self, request: Text, context: grpc.ServicerContext) -> Text:
        self._seen("Wait", context, request=request.value)
        ended = threading.Event()
        context.add_callback(ended.set)
        started = time.monotonic()
        ended.wait(120)
        remaining = context.time_remaining()
        # The RPC ended without an answer: by its deadline, or by its caller's cancel.
        deadline = remaining is not None and remaining <= 0.05
        log(
            self.log_path,
            {
                "method": "Wait.end",
                "request": request.value,
                "ended_by": "deadline" if deadline else "cancel",
                "waited": time.monotonic() - started,
            },
        )
        return Text(value="too late")


def main() -> None:
    port, log_path = int(sys.argv[1]), sys.argv[2]
    greeter = Greeter(log_path)
    text = {"request_deserializer": Text.FromString, "response_serializer": Text.SerializeToString}
    handlers = {
        "SayHello": grpc.unary_unary_rpc_method_handler(greeter.say_hello, **text),
        "SayHellos": grpc.unary_stream_rpc_method_handler(greeter.say_hellos, **text),
        "CollectHellos": grpc.stream_unary_rpc_method_handler(greeter.collect_hellos, **text),
        "Chat": grpc.stream_stream_rpc_method_handler(greeter.chat, **text),
        "Fail": grpc.unary_unary_rpc_method_handler(greeter.fail, **text),
        "Wait": grpc.unary_unary_rpc_method_handler(greeter.wait, **text),
        "Flaky": grpc.unary_unary_rpc_method_handler(greeter.flaky, **text),
        "Ticks": grpc.unary_stream_rpc_method_handler(greeter.ticks, **text),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
