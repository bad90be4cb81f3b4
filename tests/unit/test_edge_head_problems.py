"""head_problem: what h11 accepts in a request head but a proxy refuses."""

from __future__ import annotations

import h11
import pytest

from proxy.edge.framing import head_problem


def head(*headers: tuple[bytes, bytes]) -> h11.Request:
    return h11.Request(method="GET", target="/x", headers=[(b"host", b"a"), *headers])


@pytest.mark.parametrize("byte", [*range(0x01, 0x09), *range(0x0B, 0x20), 0x7F])
def test_control_bytes_in_a_value_are_refused(byte: int) -> None:
    try:
        request = head((b"x-a", b"a" + bytes([byte]) + b"b"))
    except h11.LocalProtocolError:
        return  # h11 refuses this one itself (CR, VT, FF)
    assert head_problem(request, b"", 8192) == (400, "a header value holds a control character")


def test_tab_and_high_bytes_stay_allowed() -> None:
    assert head_problem(head((b"x-a", b"a\tb \x80\xff")), b"", 8192) == (0, "")
