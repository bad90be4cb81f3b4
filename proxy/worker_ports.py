"""The supervisor's check that the ports its workers will share are free.

Workers bind with SO_REUSEPORT, which would let them join a port that another
process (a second tether with workers) holds the same way. So the supervisor binds
each address first without SO_REUSEPORT, as a lone sidecar does: anything listening
there, a SO_REUSEPORT group included, makes that bind fail, and the sidecar refuses
to start with the wording a lone sidecar uses. The socket is closed at once; the
workers bind moments later (a process taking the port in between makes the workers
fail to start instead). For port 0 the bind chooses the port the workers then share.
"""

from __future__ import annotations

import socket
from dataclasses import replace

from proxy.config.settings import SidecarSettings
from proxy.core.errors import TetherError


class PortTaken(TetherError):
    """A port the workers would share is in use (or cannot be bound)."""


def bind_once(host: str, port: int) -> int:
    """Bind every address of ``host`` on ``port`` (0: a free port, then the same one
    on the other addresses) as asyncio's servers do, close, return the port; OSError."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    chosen = port
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as sock:
            # As asyncio's create_server: a port in TIME_WAIT is free, a listening one not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], chosen, *address[2:]))
            chosen = int(sock.getsockname()[1])
    return chosen


def claim_ports(settings: SidecarSettings) -> SidecarSettings:
    """``settings`` with a concrete internal port, once the HTTP and gRPC API and
    internal ports are known to be free; raises PortTaken with the sidecar's wording."""
    api_ports = [("HTTP port", settings.http_port)]
    if settings.grpc_port is not None:
        api_ports.append(("gRPC API port", settings.grpc_port))
    for what, api_port in api_ports:
        for host in settings.listen_addresses:
            try:
                bind_once(host, api_port)
            except OSError as exc:
                raise PortTaken(
                    f"cannot listen on {what} {api_port}: {exc.strerror or exc}"
                ) from exc
    address = f"{settings.internal_listen_address}:{settings.internal_grpc_port}"
    try:
        port = bind_once(settings.internal_listen_address, settings.internal_grpc_port)
    except OSError as exc:
        raise PortTaken(
            f"cannot listen on internal gRPC address {address}: {exc.strerror or exc}"
        ) from exc
    return replace(settings, internal_grpc_port=port)
