"""Per-request time limits kept with one timer per client instead of one per request.

aiohttp's own request timeout arms (and cancels) an event-loop timer for every request:
on uvloop that is a libuv timer made and freed each time, a visible part of a kept-alive
request's CPU. Here each request only notes its deadline; the client's single timer wakes
at the earliest one, cancels the requests past theirs and sleeps again until the next.
While requests keep coming it fires about once per limit, and not at all when idle.

A request past its deadline is cancelled (as aiohttp's timeout does it) and the
cancellation comes out of its ``with`` block as :class:`TimeoutError`; a cancellation
from anywhere else stays a cancellation.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any


class RequestDeadlines:
    """Limits each request run under :meth:`limit` to ``seconds`` from its start."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def limit(self) -> _Limit:
        """A ``with`` block for one request of the current task."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a request deadline needs a running task")
        return _Limit(self, task)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start(self, task: asyncio.Task[Any]) -> None:
        loop = task.get_loop()
        if self._timer_loop is not loop and self._timer_loop is not None:
            # Used from a new event loop: the old one's requests will not end there.
            self._deadlines.clear()
            self._expired.clear()
            self.close()
        deadline = loop.time() + self._seconds
        self._deadlines[task] = deadline
        # Deadlines only grow (one limit, a monotonic clock): an armed timer is early
        # enough for this one too.
        if self._timer is None:
            self._arm(loop, deadline)

    def _end(self, task: asyncio.Task[Any]) -> bool:
        """Forget the request; whether it was cancelled for its deadline."""
        self._deadlines.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        earliest: float | None = None
        for task, deadline in self._deadlines.items():
            if task in self._expired:
                continue  # cancelled already; its block has not ended yet
            if deadline <= now:
                self._expired.add(task)
                task.cancel()
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm(loop, earliest)

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._timer = loop.call_at(when, self._check, loop)
        self._timer_loop = loop


class _Limit:
    __slots__ = ("_deadlines", "_task")

    def __init__(self, deadlines: RequestDeadlines, task: asyncio.Task[Any]) -> None:
        self._deadlines = deadlines
        self._task = task

    def __enter__(self) -> None:
        if self._task in self._deadlines._deadlines:
            raise RuntimeError("one request at a time per task")
        self._deadlines._start(self._task)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._deadlines._end(self._task):
            return
        # Cancelled for its deadline: a timeout, unless somebody else cancelled the task
        # too (told apart as asyncio.timeout does).
        if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
