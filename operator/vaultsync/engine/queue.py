"""A work queue of VaultSecret keys, in the manner of client-go's: each key is queued at most once, a key
being processed is never processed twice at once (a new request marks it to run again afterwards), and keys
can be scheduled for later (refreshes, retries) with one pending timer per key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._again: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def active(self) -> int:
        return len(self._active)

    def add(self, key: K) -> None:
        """Queues the key now, cancelling a scheduled run."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Schedules the key, replacing an earlier schedule; a queued or running key is left to finish."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: K) -> None:
        """Drops any schedule of a key that no longer exists."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._again.discard(key)

    def scheduled(self, key: K) -> bool:
        return key in self._timers

    async def get(self) -> K:
        key = await self._ready.get()
        self._queued.discard(key)
        self._active.add(key)
        self._idle.clear()
        return key

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)
        if not self._active:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Returns once no key is being processed."""
        await self._idle.wait()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


async def run_workers(queue: WorkQueue[K], handle: Callable[[K], Awaitable[None]], count: int) -> None:
    """Runs `count` workers until cancelled; `handle` must not raise (it reports its own failures)."""

    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                await handle(key)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(count)))
