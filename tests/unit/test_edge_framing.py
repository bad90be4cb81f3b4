"""The server's pure request-side decisions around llhttp: which heads are refused and
with what status, body framing, keep-alive, head sizes, and parser errors."""

from __future__ import annotations

import pytest
from httptools import HttpParserError

from proxy.edge.framing import (
    HeadVerdict,
    head_size_problem,
    judge_head,
    method_answer,
    parser_error_answer,
)

HOST = (b"host", b"a")


def judge(*headers: tuple[bytes, bytes], version: str = "1.1") -> HeadVerdict:
    return judge_head(version, list(headers))


def test_a_plain_head_keeps_alive_without_a_body() -> None:
    verdict = judge(HOST)
    assert (verdict.status, verdict.length, verdict.chunked, verdict.keep_alive) == (
        0,
        None,
        False,
        True,
    )


def test_framing_is_read_from_the_head() -> None:
    assert judge(HOST, (b"content-length", b"12")).length == 12
    assert judge(HOST, (b"transfer-encoding", b"Chunked")).chunked


@pytest.mark.parametrize(
    ("connection", "version", "keep_alive"),
    [
        (None, "1.1", True),
        (b"close", "1.1", False),
        (b"Keep-Alive, Close", "1.1", False),
        (None, "1.0", False),
        (b"keep-alive", "1.0", True),
        (b"foo, keep-alive", "1.0", True),
        (b"keep-alive, close", "1.0", False),
    ],
)
def test_keep_alive(connection: bytes | None, version: str, keep_alive: bool) -> None:
    headers = [HOST] if connection is None else [HOST, (b"connection", connection)]
    assert judge(*headers, version=version).keep_alive is keep_alive


def test_expect_continue_only_on_http11() -> None:
    assert judge(HOST, (b"expect", b"100-Continue")).expect_continue
    assert not judge(HOST, (b"expect", b"100-continue"), version="1.0").expect_continue
    assert not judge(HOST, (b"expect", b"something")).expect_continue


@pytest.mark.parametrize(
    ("headers", "version", "status"),
    [
        ([HOST, (b"host", b"b")], "1.1", 400),
        ([], "1.1", 400),
        ([], "1.0", 0),
        ([HOST, (b"transfer-encoding", b"chunked")], "1.0", 400),
        ([HOST, (b"transfer-encoding", b"gzip")], "1.1", 501),
        ([HOST, (b"transfer-encoding", b"gzip, chunked")], "1.1", 501),
        ([HOST, (b"content-length", b"3"), (b"transfer-encoding", b"chunked")], "1.1", 400),
        ([HOST], "2.0", 505),
        ([HOST], "0.9", 505),
    ],
)
def test_refused_heads(headers: list[tuple[bytes, bytes]], version: str, status: int) -> None:
    verdict = judge_head(version, headers)
    assert verdict.status == status, verdict.reason
    assert bool(verdict.reason) is bool(status)


def test_head_sizes() -> None:
    assert head_size_problem(100, 100, 200) == (0, "")
    assert head_size_problem(201, 0, 200)[0] == 414
    assert head_size_problem(150, 51, 200)[0] == 431


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("Invalid HTTP version", 505),
        ("Request has invalid `Transfer-Encoding`", 501),
        ("Invalid header value char", 400),
        ("Missing expected CR after chunk size", 400),
        ("", 400),
    ],
)
def test_parser_errors(reason: str, status: int) -> None:
    assert parser_error_answer(HttpParserError(reason))[0] == status


@pytest.mark.parametrize(
    ("start", "final", "status"),
    [
        (b"FOO / HTTP/1.1", False, 501),
        (b"\r\nget /", False, 501),
        (b"G\x00T /", False, 400),
        (b" / HTTP/1.1", False, 400),
        (b"^\xdc", False, 400),
        (b"FO", False, None),  # more may come: "FO" could be "FOO " or "FO\x00"
        (b"FO", True, 400),
        (b"X" * 40, False, 400),
    ],
)
def test_a_refused_method_is_judged_on_whole_bytes(
    start: bytes, final: bool, status: int | None
) -> None:
    answer = method_answer(start, final)
    assert (answer[0] if answer else None) == status


def test_a_refused_method_is_judged_the_same_however_the_bytes_are_split() -> None:
    for data in (b"FOO / HTTP/1.1\r\n", b"^\xdcc", b"GETX / x", b"G\x00T"):
        whole = method_answer(data, True)
        for cut in range(1, len(data)):
            piece = method_answer(data[:cut], False)
            assert piece is None or piece == whole, (data, cut)
