"""The long-lived object the sidecar holds: one config snapshot, its breakers and budgets."""

from __future__ import annotations

import asyncio
import random
import time

from resiliency.bounded import LruDict
from resiliency.circuit_breaker import BreakerCache, StateChangeHook
from resiliency.lookup import AppPolicy, resolve_app_policy
from resiliency.policies import ResiliencyConfig
from resiliency.retry_budget import RetryBudget
from resiliency.runner import Clock, Runner, Sleep

# Target apps whose resolved policy, breakers and retry budget are kept. Any local
# client can name a made-up app ID; the least recently called ones are forgotten
# (a forgotten breaker starts closed again the next time).
MAX_TARGET_APPS = 1024


class ResiliencyEngine:
    """Hands out a Runner per call; ``reload`` swaps the config and keeps unchanged breakers."""

    def __init__(
        self,
        config: ResiliencyConfig,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_breaker_state_change: StateChangeHook | None = None,
        max_target_apps: int = MAX_TARGET_APPS,
    ) -> None:
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_state_change = on_breaker_state_change
        self._policies: LruDict[str, AppPolicy] = LruDict(max_target_apps)
        self._breakers: LruDict[str, BreakerCache] = LruDict(max_target_apps)
        self._budgets: LruDict[str, RetryBudget] = LruDict(max_target_apps)

    @property
    def config(self) -> ResiliencyConfig:
        """The snapshot in force."""
        return self._config

    def reload(self, config: ResiliencyConfig) -> None:
        """Apply a new snapshot; runners already handed out keep the old policies."""
        self._config = config
        self._policies.clear()
        # Breakers and budgets are compared lazily: equal policies keep their state.

    def policy_for(self, app_id: str) -> AppPolicy:
        """The resolved policies for calls to ``app_id`` (cached per snapshot)."""
        policy = self._policies.get(app_id)
        if policy is None:
            policy = resolve_app_policy(self._config, app_id)
            self._policies.put(app_id, policy)
        return policy

    def runner_for(self, app_id: str, method: str, *, streaming: bool = False) -> Runner:
        """A runner for one call; the breaker key is "<appId>:<method>", as Dapr's."""
        policy = self.policy_for(app_id)
        breaker = None
        if policy.circuit_breaker is not None:
            cache = self._breakers.get(app_id)
            if (
                cache is None
                or cache.policy != policy.circuit_breaker
                or cache.capacity != policy.circuit_breaker_cache_size
            ):
                cache = BreakerCache(
                    policy.circuit_breaker,
                    policy.circuit_breaker_cache_size,
                    self._clock,
                    self._on_state_change,
                )
                self._breakers.put(app_id, cache)
            breaker = cache.get(f"{app_id}:{method}")
        budget = None
        if policy.retry is not None and policy.retry.budget is not None:
            budget = self._budgets.get(app_id)
            if budget is None or budget.policy != policy.retry.budget:
                budget = RetryBudget(policy.retry.budget, self._clock)
                self._budgets.put(app_id, budget)
        return Runner(
            policy,
            breaker=breaker,
            budget=budget,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
            streaming=streaming,
        )
