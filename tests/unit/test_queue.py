"""The work queue: each key once, never twice at once, one schedule per key."""

from __future__ import annotations

import asyncio

from vaultsync.engine.queue import WorkQueue


async def test_a_key_is_queued_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"


async def test_a_key_added_while_active_runs_again_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0  # not handed to a second worker while the first runs
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_a_new_schedule_replaces_the_old_one_and_add_cancels_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0.05)
    queue.add_after("a", 10)
    await asyncio.sleep(0.1)
    assert len(queue) == 0 and queue.scheduled("a")
    queue.add("a")
    assert not queue.scheduled("a")
    queue.add_after("b", 0.01)
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    assert await asyncio.wait_for(queue.get(), 1) == "b"
    queue.close()


async def test_wait_idle_returns_when_nothing_runs() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    waiter = asyncio.create_task(queue.wait_idle())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.done(key)
    await asyncio.wait_for(waiter, 1)
