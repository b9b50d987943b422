"""Where metric values come from: the enclave runtimes' own ``/metrics`` endpoints.

Each replica's runtime exports its enclave's size and EPC use
(``kubetee_enclave_epc_size_bytes``, ``kubetee_enclave_epc_used_bytes``); this server
scrapes the runtimes of the pods a request is about, at request time, as
metrics-server reads kubelets. Only samples labelled with the pod's own namespace
and name count, so a recycled pod IP cannot lend one pod another's figures.

Finding a runtime's endpoint:

* :class:`PodIPTargets` (in a cluster): ``<pod IP>:9094``;
* :class:`FileSDTargets` (the local cluster, where runtimes are local processes on
  free ports): Prometheus file-based service discovery files that each runtime writes
  (``[{"targets": ["127.0.0.1:41234"], "labels": {"namespace": ..., "pod": ...}}]``).
"""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from kubetee.metrics import names

log = logging.getLogger(__name__)

MAX_CONCURRENT_SCRAPES = 32
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PodRef:
    """What this server needs of a pod."""

    namespace: str
    name: str
    uid: str
    ip: str | None
    epc_request_bytes: int
    enclave_container: str | None = None


@dataclass(frozen=True, slots=True)
class EnclaveSample:
    """One scrape of one runtime."""

    used_bytes: int
    size_bytes: int
    at: datetime


class TargetResolver(Protocol):
    def address(self, pod: PodRef) -> str | None:
        """``host:port`` of the pod's runtime metrics, None if it has none (yet)."""
        ...


class PodIPTargets:
    def __init__(self, port: int = names.DEFAULT_PORTS["runtime"]) -> None:
        self.port = port

    def address(self, pod: PodRef) -> str | None:
        if not pod.ip:
            return None
        host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
        return f"{host}:{self.port}"


class FileSDTargets:
    """Targets from file_sd JSON files matching glob patterns, re-read when they change."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._files: dict[str, tuple[float, dict[tuple[str, str], str]]] = {}

    def address(self, pod: PodRef) -> str | None:
        return self.targets().get((pod.namespace, pod.name))

    def targets(self) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        seen = set()
        for pattern in self.patterns:
            for path in glob.glob(pattern):  # noqa: PTH207 - patterns span directories
                seen.add(path)
                found.update(self._read(Path(path)))
        for stale in set(self._files) - seen:
            del self._files[stale]
        return found

    def _read(self, path: Path) -> dict[tuple[str, str], str]:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        cached = self._files.get(str(path))
        if cached is not None and cached[0] == mtime:
            return cached[1]
        targets: dict[tuple[str, str], str] = {}
        try:
            groups = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            log.warning("ignoring target file %s: %s", path, error)
            groups = []
        for group in groups if isinstance(groups, list) else []:
            labels = group.get("labels") or {}
            for target in group.get("targets") or []:
                if labels.get("namespace") and labels.get("pod"):
                    targets[(str(labels["namespace"]), str(labels["pod"]))] = str(target)
        self._files[str(path)] = (mtime, targets)
        return targets


def parse_sample(text: str, pod: PodRef, at: datetime) -> EnclaveSample | None:
    """The pod's enclave figures in a Prometheus text exposition, None if absent."""
    values: dict[str, float] = {}
    wanted = {names.ENCLAVE_EPC_USED_BYTES, names.ENCLAVE_EPC_SIZE_BYTES}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("namespace") == pod.namespace and labels.get("pod") == pod.name:
                values[family.name] = sample.value
    if names.ENCLAVE_EPC_USED_BYTES not in values:
        return None
    size = int(values.get(names.ENCLAVE_EPC_SIZE_BYTES) or pod.epc_request_bytes)
    return EnclaveSample(int(values[names.ENCLAVE_EPC_USED_BYTES]), size, at)


class RuntimeScraper:
    """Scrapes runtimes; answers repeated questions within ``cache_seconds`` from memory."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        targets: TargetResolver,
        *,
        timeout_seconds: float = 2.0,
        cache_seconds: float = 1.0,
        on_error: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self.targets = targets
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._cache_seconds = cache_seconds
        self._on_error = on_error
        self._clock = clock
        self._cache: dict[str, tuple[float, EnclaveSample | None]] = {}
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_SCRAPES)

    async def samples(self, pods: Iterable[PodRef]) -> dict[str, EnclaveSample]:
        """Pod name -> sample, for the pods whose runtime answered."""
        pods = list(pods)
        results = await asyncio.gather(*(self.sample(pod) for pod in pods))
        return {pod.name: s for pod, s in zip(pods, results, strict=True) if s is not None}

    async def sample(self, pod: PodRef) -> EnclaveSample | None:
        now = self._clock()
        cached = self._cache.get(pod.uid)
        if cached is not None and cached[0] > now:
            return cached[1]
        result = await self._scrape(pod)
        self._cache[pod.uid] = (now + self._cache_seconds, result)
        if len(self._cache) > 4 * MAX_CONCURRENT_SCRAPES * 64:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return result

    async def _scrape(self, pod: PodRef) -> EnclaveSample | None:
        address = self.targets.address(pod)
        if address is None:
            return None
        url = f"http://{address}/metrics"
        try:
            async with self._limit, self._session.get(url, timeout=self._timeout) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status
                    )
                text = (await response.content.read(MAX_BODY_BYTES)).decode(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as error:
            self._on_error()
            log.info("no EPC figures from pod %s/%s at %s: %s", pod.namespace, pod.name, url, error)
            return None
        try:
            return parse_sample(text, pod, datetime.now(UTC))
        except ValueError as error:
            self._on_error()
            log.warning("unreadable metrics of pod %s/%s: %s", pod.namespace, pod.name, error)
            return None
