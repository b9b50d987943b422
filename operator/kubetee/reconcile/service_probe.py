"""Probing the attestation service the runtimes are pointed at, for the status.

Every ``interval`` seconds a GET of ``<url>/readyz`` of each of the service's URLs
(its replicas, as the runtimes get them; over TLS trusting only the CA the runtimes
get). ``/readyz`` fails when the service could not complete an attestation (its
Kubernetes API or etcd away), not only when it is down. The service is available while
any replica is ready, as a runtime fails over to any of them. Two failed rounds in a
row make it unavailable, one ready replica makes it available again; each change is
handed to ``on_change`` (the runtime then recomputes every EnclaveContainer's status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from kubetee.controller.conditions import timestamp
from kubetee.controller.service_health import (
    REACHABLE,
    ServiceHealth,
    not_configured,
    unreachable,
)

logger = logging.getLogger(__name__)

FAILURES_BEFORE_UNAVAILABLE = 2
_TIMEOUT = aiohttp.ClientTimeout(total=5)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AttestationServiceProbe:
    """The attestation service's reachability, kept current by a background task."""

    def __init__(
        self,
        url: str | None,
        ca_pem: str | None,
        interval: float,
        on_change: Callable[[ServiceHealth], None],
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._urls = [u.strip().rstrip("/") for u in url.split(",")] if url else []
        self._url = ", ".join(self._urls) or None
        self._context = ssl.create_default_context(cadata=ca_pem) if ca_pem else None
        self._interval = interval
        self._on_change = on_change
        self._clock = clock
        self._failures = 0
        self._first_failure = ""
        self.health: ServiceHealth = REACHABLE if self._url else not_configured()
        # When the service last became reachable (the operator's start counts).
        self.reachable_since: datetime = clock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._urls:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            while True:
                self.record(await self._probe(session))
                await asyncio.sleep(self._interval)

    async def _probe(self, session: aiohttp.ClientSession) -> str | None:
        """None if any replica is ready, else what went wrong at each."""
        failures = await asyncio.gather(*(self._probe_one(session, url) for url in self._urls))
        if any(failure is None for failure in failures):
            return None
        if len(self._urls) == 1:
            return failures[0]
        return "; ".join(
            f"{url}: {failure}" for url, failure in zip(self._urls, failures, strict=True)
        )

    async def _probe_one(self, session: aiohttp.ClientSession, url: str) -> str | None:
        try:
            async with session.get(f"{url}/readyz", ssl=self._context or True) as answer:
                if answer.status == 200:
                    return None
                detail = ""
                with contextlib.suppress(aiohttp.ClientError, ValueError, TimeoutError):
                    body = await answer.json(content_type=None)
                    detail = (
                        f": {str(body.get('detail', ''))[:300]}" if isinstance(body, dict) else ""
                    )
                return f"/readyz answered HTTP {answer.status}{detail}"
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return str(error) or type(error).__name__

    def record(self, failure: str | None) -> None:
        """Take one probe's result: None when the service answered, else the error."""
        now = self._clock()
        if failure is None:
            self._failures = 0
            if not self.health.reachable:
                self.reachable_since = now
                logger.info("attestation service %s answers again", self._url)
                self._set(REACHABLE)
            return
        self._failures += 1
        if self._failures == 1:
            self._first_failure = timestamp(now)
        if self._failures >= FAILURES_BEFORE_UNAVAILABLE:
            health = unreachable(self._url or "", failure, self._first_failure)
            if self.health.reachable:
                logger.warning("%s", health.message)
            self._set(health)

    def _set(self, health: ServiceHealth) -> None:
        changed = health.reachable != self.health.reachable
        self.health = health
        if changed:
            self._on_change(health)
