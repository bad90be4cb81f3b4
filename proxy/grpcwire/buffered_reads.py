"""Reading a connection into one preallocated buffer instead of a new ``bytes`` per read.

With a plain ``asyncio.Protocol`` under TLS, uvloop asks ``ssl`` for up to 256 KiB per
read: each read allocates that much (above glibc's mmap threshold, so an ``mmap``, an
``mremap`` to shrink it and a ``munmap`` when it dies: three system calls and fresh
pages for every TLS read). As a ``BufferedProtocol`` the decrypted bytes land in one
buffer that lives as long as the process, and only what arrived is copied out."""

from __future__ import annotations

import asyncio

# One buffer for every connection of the process: uvloop fills it and calls
# buffer_updated in the same callback, and the bytes are copied out before it returns,
# so no two connections ever hold it at once. 256 KiB is what uvloop asks for.
_BUFFER = memoryview(bytearray(256 * 1024))


class BufferedReads(asyncio.BufferedProtocol):
    """Feeds ``data_received`` from the shared read buffer."""

    __slots__ = ()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_BUFFER[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError
