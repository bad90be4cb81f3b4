"""Which requests the app channel sends again after a reused connection failed:
Go's Transport.shouldRetryRequest with Request.isReplayable (net/http)."""

from __future__ import annotations

import pytest

from proxy.app.channel import may_replay


@pytest.mark.parametrize("verb", ["GET", "HEAD", "OPTIONS", "TRACE", "POST", "PUT", "DELETE"])
def test_nothing_written_goes_out_again_whatever_the_method(verb: str) -> None:
    assert may_replay(verb, [], written=False, answered=False)


@pytest.mark.parametrize("verb", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_replayable_methods_go_out_again_when_the_app_said_nothing(verb: str) -> None:
    assert may_replay(verb, [], written=True, answered=False)


@pytest.mark.parametrize("verb", ["POST", "PATCH", "PUT", "DELETE"])
def test_other_methods_written_in_full_are_not_sent_twice(verb: str) -> None:
    # Go replays neither PUT nor DELETE, idempotent as RFC 9110 calls them.
    assert not may_replay(verb, [(b"content-type", b"text/plain")], written=True, answered=False)


@pytest.mark.parametrize("name", [b"idempotency-key", b"X-Idempotency-Key"])
def test_an_idempotency_key_makes_any_method_replayable(name: bytes) -> None:
    assert may_replay("POST", [(name, b"order-7")], written=True, answered=False)


def test_nothing_is_replayed_once_the_app_began_to_answer() -> None:
    assert not may_replay("GET", [], written=True, answered=True)
