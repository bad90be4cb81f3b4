"""Calls in progress per connection and per peer; parked bodies per caller and in all."""

from __future__ import annotations

import asyncio

import pytest

from proxy.core.body import Body
from proxy.core.errors import CallRejected
from proxy.hop.header_rules import CallerIdentity
from proxy.hop.mux_quota import CallLimits, MuxQuota
from proxy.hop.mux_server import ParkedBodies

A = CallerIdentity("a", "default")
B = CallerIdentity("b", "default")


def test_each_limit_holds_and_a_release_lets_the_next_in() -> None:
    quota = MuxQuota(CallLimits(per_connection=2, per_peer=3))

    async def scenario() -> list[str]:
        events: list[str] = []
        assert quota.try_acquire("c1", "p")
        assert quota.try_acquire("c1", "p")
        assert not quota.try_acquire("c1", "p")  # the connection is full
        assert quota.try_acquire("c2", "p")  # another connection of the same peer
        assert not quota.try_acquire("c3", "p")  # now the peer is full

        async def third_on_c1() -> None:
            await quota.acquire("c1", "p")
            events.append("admitted")

        waiting = asyncio.ensure_future(third_on_c1())
        await asyncio.sleep(0)
        events.append("waiting")
        quota.release("c2", "p")  # the peer has room again, but c1 is still full
        await asyncio.sleep(0)
        assert not waiting.done()
        quota.release("c1", "p")
        await asyncio.wait_for(waiting, 5)
        return events

    assert asyncio.run(scenario()) == ["waiting", "admitted"]
    assert quota.in_progress("c1") == 2 and quota.in_progress("p") == 2


def test_counts_for_keys_no_longer_in_use_are_dropped() -> None:
    quota = MuxQuota(CallLimits())
    for index in range(100):
        assert quota.try_acquire(f"c{index}", f"p{index}")
        quota.release(f"c{index}", f"p{index}")
    assert quota._counts == {} and quota._waiters == {}


def test_parked_bodies_are_capped_per_caller_and_in_all() -> None:
    async def scenario() -> None:
        parked = ParkedBodies(per_caller=2, total=3)
        first = parked.park(A, Body(b"1"))
        parked.park(A, Body(b"2"))
        with pytest.raises(CallRejected) as refused:
            parked.park(A, Body(b"3"))
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        parked.park(B, Body(b"4"))  # another caller still may
        with pytest.raises(CallRejected):
            parked.park(B, Body(b"5"))  # but all together are full
        taken = parked.take(first, A)
        assert taken is not None and taken.head == b"1"
        parked.park(A, Body(b"6"))  # taking one made room
        await parked.close()

    asyncio.run(scenario())


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        CallLimits(per_connection=0)
