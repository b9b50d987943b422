"""Whether an attestation could complete now: the service's answer at /readyz.

Every attestation reads the pod, its EnclaveContainer and the released Secret from the
watch caches (``cluster_cache``: not ready until they have synced), and a first one (or,
with ``--replay-ledger=lease``, every one) writes to the Kubernetes API, so with the API
or its etcd away none can complete, whichever nonce ledger is used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from kubetee.attestation_service.replay import LEASE_PREFIX

_NOT_FOUND = 404
_CACHE_SECONDS = 2.0
_TIMEOUT_SECONDS = 3.0
_PROBE_OBJECT = LEASE_PREFIX + "readiness-probe"


class ApiReadiness:
    def __init__(self, coordination_api: Any, namespace: str) -> None:
        # coordination_api: kubernetes.client.CoordinationV1Api (untyped library)
        self._api = coordination_api
        self._namespace = namespace
        self._answer: tuple[float, str | None] | None = None

    async def problem(self) -> str | None:
        """Why no attestation could complete now (the API or its etcd away), or None.

        A GET of one object is read from etcd (not the apiserver's watch cache), as the
        reads of an attestation are: a name nobody holds answers 404 when both are up.
        Kept for a moment: anyone may ask /readyz, and asking often must not load the
        apiserver."""
        now = time.monotonic()
        if self._answer is None or now - self._answer[0] > _CACHE_SECONDS:
            try:
                # The client retries on its own; a probe wants an answer in time.
                problem = await asyncio.wait_for(asyncio.to_thread(self._read), _TIMEOUT_SECONDS)
            except TimeoutError:
                problem = (
                    f"the Kubernetes API does not answer a read within {_TIMEOUT_SECONDS:.0f}s"
                )
            self._answer = (now, problem)
        return self._answer[1]

    def forget(self) -> None:
        """Ask the API again at the next question (the kept answer is dropped)."""
        self._answer = None

    def _read(self) -> str | None:
        try:
            self._api.read_namespaced_lease(_PROBE_OBJECT, self._namespace, _request_timeout=3)
        except ApiException as exc:
            if exc.status == _NOT_FOUND:
                return None
            return f"the Kubernetes API answers {exc.status} {exc.reason}"
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return f"the Kubernetes API cannot be reached: {type(exc).__name__}"
        return None


Check = Callable[[], Awaitable[str | None]]


def first_problem(*checks: Check) -> Check:
    """One readiness check: the first of ``checks`` that finds a problem answers."""

    async def problem() -> str | None:
        for check in checks:
            found = await check()
            if found is not None:
                return found
        return None

    return problem
