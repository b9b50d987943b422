"""A keyed work queue: bursts of events become one reconcile per object.

As in client-go's workqueue: a key added many times before it is processed is
processed once; a key is never processed by two workers at once, and a key added while
it is being processed runs again right after. Adding waits ``delay`` seconds first (a
burst of pod changes then costs one status write), without pushing an already waiting
key further back. Failures retry: after a ``kopf.TemporaryError``'s ``delay``, others
with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import kopf

from kubetee.metrics.operator import operator_metrics

K = TypeVar("K", bound=Hashable)

logger = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    """Keys waiting to be reconciled by a fixed number of worker tasks."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Awaitable[None]],
        *,
        delay: float,
        workers: int,
        max_backoff: float = 60.0,
    ) -> None:
        self.name = name
        self._reconcile = reconcile
        self._delay = delay
        self._workers = workers
        self._max_backoff = max_backoff
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: K, after: float | None = None) -> None:
        """Reconcile ``key`` in ``after`` seconds (default: the queue's delay), or sooner."""
        loop = asyncio.get_running_loop()
        wait = self._delay if after is None else after
        due = loop.time() + wait
        waiting = self._waiting.get(key)
        if waiting is not None:
            if waiting[0] <= due:
                return
            waiting[1].cancel()
        self._idle.clear()
        self._waiting[key] = (due, loop.call_at(due, self._make_ready, key))

    def __len__(self) -> int:
        return len(self._waiting) + len(self._queued) + len(self._active)

    def _make_ready(self, key: K) -> None:
        self._waiting.pop(key, None)
        if key in self._queued:
            return
        if key in self._active:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._ready.put_nowait(key)

    def start(self) -> None:
        """Start the worker tasks."""
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self.name}-worker-{index}")
            for index in range(self._workers)
        ]

    async def stop(self) -> None:
        """Cancel the workers and every waiting key."""
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def join(self) -> None:
        """Wait until no key is waiting, queued or being processed."""
        while len(self):
            self._idle.clear()
            await self._idle.wait()

    def _backoff(self, key: K) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        return float(min(0.5 * 2 ** (failures - 1), self._max_backoff))

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                async with operator_metrics().reconciling(self.name):
                    await self._reconcile(key)
            except kopf.TemporaryError as error:
                delay = error.delay if error.delay is not None else self._backoff(key)
                logger.warning("%s %s: %s; retrying in %.1fs", self.name, key, error, delay)
                self.add(key, after=delay)
            except Exception:
                delay = self._backoff(key)
                logger.exception("%s %s failed; retrying in %.1fs", self.name, key, delay)
                self.add(key, after=delay)
            else:
                self._failures.pop(key, None)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self._make_ready(key)
                if not len(self):
                    self._idle.set()
