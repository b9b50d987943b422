"""The KBS client's time limit is per request, kept by one timer per client: a service
that does not answer in time is a typed :class:`KbsUnavailableError`, a slow exchange
whose requests each answer in time is not, and a cancellation from the caller stays a
cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from enclave_runtime.kbs_protocol import KbsUnavailableError
from enclave_runtime.kbs_protocol.client import KbsClient
from enclave_runtime.kbs_protocol.request_deadlines import RequestDeadlines


@dataclass
class SlowKbs:
    """Answers ``/auth`` after ``delay`` seconds (forever if ``None``)."""

    url: str = ""
    delay: float | None = 0.0
    answered: int = 0

    async def auth(self, _: web.Request) -> web.Response:
        if self.delay is None:
            await asyncio.Event().wait()  # hung
        await asyncio.sleep(self.delay or 0.0)
        self.answered += 1
        return web.json_response({"nonce": "bm9uY2U="})


@pytest.fixture
async def kbs() -> AsyncIterator[SlowKbs]:
    slow = SlowKbs()
    app = web.Application()
    app.router.add_post("/kbs/v0/auth", slow.auth)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    slow.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield slow
    await runner.cleanup()


async def test_a_hung_service_is_unavailable_after_the_limit_and_the_next_round_works(
    kbs: SlowKbs,
) -> None:
    async with KbsClient(kbs.url, timeout_seconds=0.3) as client:
        kbs.delay = None
        started = time.monotonic()
        with pytest.raises(KbsUnavailableError, match="auth: cannot reach the attestation"):
            await client.auth()
        assert 0.3 <= time.monotonic() - started < 5

        kbs.delay = 0.0
        assert (await client.auth()).nonce == "bm9uY2U="  # on a new connection


async def test_the_limit_is_per_request_not_per_client(kbs: SlowKbs) -> None:
    """Requests that each answer in time all succeed, however long they take together
    and however the one timer was armed for earlier ones."""
    kbs.delay = 0.15
    async with KbsClient(kbs.url, timeout_seconds=0.4) as client:
        for _ in range(5):  # 0.75 s in all
            await client.auth()
    assert kbs.answered == 5


async def test_a_later_request_still_gets_its_own_limit(kbs: SlowKbs) -> None:
    """The timer armed for a fast request's deadline re-arms for a later, hung one."""
    async with KbsClient(kbs.url, timeout_seconds=0.3) as client:
        await client.auth()
        await asyncio.sleep(0.1)
        kbs.delay = None
        started = time.monotonic()
        with pytest.raises(KbsUnavailableError):
            await client.auth()
        assert time.monotonic() - started >= 0.3


async def test_a_callers_cancellation_stays_a_cancellation(kbs: SlowKbs) -> None:
    kbs.delay = None
    async with KbsClient(kbs.url, timeout_seconds=5) as client:
        request = asyncio.create_task(client.auth())
        await asyncio.sleep(0.1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request


async def test_one_timer_serves_many_requests_and_sleeps_when_idle() -> None:
    deadlines = RequestDeadlines(0.2)
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counted(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if callback == deadlines._check:
            armed.append(when)
        return call_at(when, callback, *args, **kwargs)

    loop.call_at = counted  # type: ignore[method-assign]
    try:
        for _ in range(50):
            with deadlines.limit():
                await asyncio.sleep(0)
        assert len(armed) == 1
        await asyncio.sleep(0.3)  # the timer fired with no request in flight
        assert len(armed) == 1
    finally:
        loop.call_at = call_at  # type: ignore[method-assign]
        deadlines.close()


async def test_a_request_past_its_deadline_is_a_timeout() -> None:
    deadlines = RequestDeadlines(0.05)
    with pytest.raises(TimeoutError), deadlines.limit():
        await asyncio.sleep(1)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    deadlines.close()


def test_deadlines_still_hold_when_used_from_a_new_event_loop() -> None:
    """A client kept across ``asyncio.run`` calls: the timer armed on the first loop is
    gone with it; a request on the next loop gets its own."""
    deadlines = RequestDeadlines(0.05)

    async def quick() -> None:
        with deadlines.limit():
            await asyncio.sleep(0)

    async def hung() -> None:
        with deadlines.limit():
            await asyncio.sleep(1)

    asyncio.run(quick())
    with pytest.raises(TimeoutError):
        asyncio.run(hung())
    deadlines.close()
