from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.errors import InvalidMethod
from proxy.core.method_path import normalize_method


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("neworder", "neworder"),
        ("/neworder", "neworder"),
        ("api/v1/add", "api/v1/add"),
        ("a//b/./c/", "a/b/c"),
        ("a/b/../c", "a/c"),
        ("../../etc/passwd", "etc/passwd"),
        (".", ""),
        ("..", ""),
        ("", ""),
        ("admin%2F..%2Fpublic", "admin%2F..%2Fpublic"),
        ("a%2Fb", "a%2Fb"),
        ("a%252Fb", "a%252Fb"),
        ("a\\b", "a\\b"),
    ],
)
def test_normalisation(raw: str, expected: str) -> None:
    assert normalize_method(raw) == expected


@pytest.mark.parametrize(
    "raw", ["a#b", "a?b", "a\x00b", "a\x01", "a\x1fb", "a\x7f", "a\nb", "a\rb"]
)
def test_forbidden_characters(raw: str) -> None:
    with pytest.raises(InvalidMethod):
        normalize_method(raw)


@given(st.text())
def test_normalised_form_is_stable_and_never_climbs(raw: str) -> None:
    try:
        once = normalize_method(raw)
    except InvalidMethod:
        return
    assert normalize_method(once) == once
    assert not once.startswith("/")
    assert ".." not in once.split("/")
    assert "" not in once.split("/") or once == ""
