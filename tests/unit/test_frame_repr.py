"""The short frame repr says what hyperframe's own says, from fewer bytes."""

from __future__ import annotations

import binascii

import hyperframe.frame
from hyperframe.frame import DataFrame

from proxy.grpcwire import frame_repr


def _hyperframe_text(data: bytes) -> str:
    # hyperframe 6's _raw_data_repr, as it reads: the whole payload hex-encoded, cut to 20.
    if not data:
        return "None"
    text = binascii.hexlify(data).decode("ascii")
    return "<hex:" + (text[:20] + "..." if len(text) > 20 else text) + ">"


def test_same_text_for_every_length_around_the_cut() -> None:
    for size in (0, 1, 9, 10, 11, 12, 100, 18_000):
        data = bytes(range(256)) * (size // 256 + 1)
        data = data[:size]
        assert frame_repr.short_data_repr(data) == _hyperframe_text(data), size
        assert frame_repr.short_data_repr(memoryview(data)) == _hyperframe_text(data), size
    assert frame_repr.short_data_repr(None) == "None"


def test_installed_frames_use_it() -> None:
    frame_repr.install()
    assert hyperframe.frame._raw_data_repr is frame_repr.short_data_repr
    frame = DataFrame(1)
    frame.data = b"\x01" * 5000
    assert repr(frame) == f"DataFrame(stream_id=1, flags=[]): <hex:{'01' * 10}...>"
