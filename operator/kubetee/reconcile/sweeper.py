"""A sweep over kopf's indexes, repeated in a task of its own until the operator stops.

The attestation upkeep and TCB recovery judge every replica on a timer rather than per
watch event: what they decide on (validity times, deadlines, collateral) changes with the
clock, not with the objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

IndexesT = TypeVar("IndexesT")


class Sweeper(ABC, Generic[IndexesT]):
    """Calls :meth:`sweep` every ``interval_seconds``; a failed sweep is logged and the next
    one runs as planned. Owns ``api_client`` and closes it on :meth:`close`."""

    def __init__(self, api_client: Any, interval_seconds: float, what: str) -> None:
        self._api_client = api_client
        self._interval = interval_seconds
        self._what = what
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def sweep(self, indexes: IndexesT, now: datetime) -> None: ...

    def start(self, indexes: IndexesT) -> None:
        self._task = asyncio.create_task(self._sweep_forever(indexes))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._api_client.close()

    async def _sweep_forever(self, indexes: IndexesT) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep(indexes, datetime.now(UTC))
            except Exception:
                logger.exception("%s sweep failed; retrying", self._what)
