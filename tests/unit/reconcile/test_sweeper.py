"""The sweeper's loop: sweeps on its interval, outlives a failed sweep, stops on close."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from kubetee.reconcile.sweeper import Sweeper


class FakeClient:
    closed = False

    async def close(self) -> None:
        self.closed = True


class Counting(Sweeper[list[str]]):
    """Fails its first sweep, then records each one."""

    def __init__(self, api_client: FakeClient) -> None:
        super().__init__(api_client, 0.01, "test")
        self.calls = 0
        self.second = asyncio.Event()

    async def sweep(self, indexes: list[str], now: datetime) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first sweep fails")
        indexes.append(now.isoformat())
        self.second.set()


async def test_a_failed_sweep_is_logged_and_the_next_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, seen = FakeClient(), []
    sweeper = Counting(api)
    sweeper.start(seen)
    async with asyncio.timeout(5):
        await sweeper.second.wait()
    await sweeper.close()
    assert api.closed
    assert "test sweep failed; retrying" in caplog.text
    calls = sweeper.calls
    await asyncio.sleep(0.05)
    assert sweeper.calls == calls  # stopped: no sweep after close


async def test_close_before_start_closes_the_client() -> None:
    api = FakeClient()
    await Counting(api).close()
    assert api.closed
