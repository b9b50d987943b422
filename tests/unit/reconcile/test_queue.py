"""The work queue coalesces bursts, never runs a key twice at once, and retries."""

from __future__ import annotations

import asyncio

import kopf

from kubetee.reconcile.queue import WorkQueue


async def test_a_burst_of_adds_is_one_reconcile() -> None:
    seen: list[str] = []

    async def reconcile(key: str) -> None:
        seen.append(key)

    queue: WorkQueue[str] = WorkQueue("t", reconcile, delay=0.05, workers=2)
    queue.start()
    for _ in range(50):
        queue.add("a")
    queue.add("b")
    await asyncio.wait_for(queue.join(), 5)
    await queue.stop()
    assert sorted(seen) == ["a", "b"]


async def test_a_key_added_while_running_runs_again_after_not_beside() -> None:
    running = 0
    overlap = False
    runs = 0
    started = asyncio.Event()
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        nonlocal running, overlap, runs
        running += 1
        overlap = overlap or running > 1
        runs += 1
        started.set()
        await release.wait()
        running -= 1

    queue: WorkQueue[str] = WorkQueue("t", reconcile, delay=0, workers=4)
    queue.start()
    queue.add("a")
    await asyncio.wait_for(started.wait(), 5)
    queue.add("a")
    queue.add("a")
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(queue.join(), 5)
    await queue.stop()
    assert runs == 2
    assert not overlap


async def test_temporary_errors_retry_after_their_delay() -> None:
    attempts = 0

    async def reconcile(key: str) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise kopf.TemporaryError("busy", delay=0.01)

    queue: WorkQueue[str] = WorkQueue("t", reconcile, delay=0, workers=1)
    queue.start()
    queue.add("a")
    await asyncio.wait_for(queue.join(), 5)
    await queue.stop()
    assert attempts == 3


async def test_an_earlier_add_wins_over_a_later_one() -> None:
    seen: list[str] = []

    async def reconcile(key: str) -> None:
        seen.append(key)

    queue: WorkQueue[str] = WorkQueue("t", reconcile, delay=10, workers=1)
    queue.start()
    queue.add("a")  # in 10 s
    queue.add("a", after=0)  # now
    await asyncio.wait_for(queue.join(), 5)
    await queue.stop()
    assert seen == ["a"]
