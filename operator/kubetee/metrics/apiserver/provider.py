"""Metric values for pods and EnclaveContainers, from their runtimes' samples.

Metrics (the names an HPA asks for; prometheus-adapter's rules give the same):

========================================  =====================================================
``pods/epc_utilization``                  percent of the replica's enclave EPC in use
``pods/epc_used_bytes``                   EPC the replica's enclave uses
``enclavecontainers.kubetee.io/           percent of its replicas' EPC in use (sum used /
epc_utilization``                         sum size over the replicas that reported)
``enclavecontainers.kubetee.io/           EPC its replicas use, summed
epc_used_bytes``
``enclavecontainers.kubetee.io/           EPC its desired replicas request (status.epc)
epc_requested_bytes``
========================================  =====================================================

A pod whose runtime has not answered has no value (the HPA treats it as missing:
no usage when scaling up, target usage when scaling down).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from kubetee.metrics.apiserver.kube import EnclaveContainerRef
from kubetee.metrics.apiserver.scrape import EnclaveSample, PodRef
from kubetee.metrics.apiserver.wire import DescribedObject, MetricInfo, MetricValue
from kubetee.metrics.errors import NotFoundError
from kubetee.metrics.names import CM_EPC_REQUESTED_BYTES, CM_EPC_USED_BYTES, CM_EPC_UTILIZATION

PODS = "pods"
ENCLAVE_CONTAINERS = "enclavecontainers.kubetee.io"
WILDCARD = "*"

POD_METRICS = (CM_EPC_UTILIZATION, CM_EPC_USED_BYTES)
EC_METRICS = (CM_EPC_UTILIZATION, CM_EPC_USED_BYTES, CM_EPC_REQUESTED_BYTES)
METRICS = [MetricInfo(PODS, m) for m in POD_METRICS] + [
    MetricInfo(ENCLAVE_CONTAINERS, m) for m in EC_METRICS
]


class Reader(Protocol):
    async def pods(self, namespace: str, label_selector: str) -> list[PodRef]: ...

    async def pod(self, namespace: str, name: str) -> PodRef: ...

    async def enclave_containers(
        self, namespace: str, label_selector: str
    ) -> list[EnclaveContainerRef]: ...

    async def enclave_container(self, namespace: str, name: str) -> EnclaveContainerRef: ...


class Sampler(Protocol):
    async def sample(self, pod: PodRef) -> EnclaveSample | None: ...

    async def samples(self, pods: list[PodRef]) -> dict[str, EnclaveSample]: ...


def utilization(used: int, size: int) -> Decimal:
    """Percent of ``size`` that ``used`` is, 0 for an enclave of unknown size."""
    return Decimal(used) * 100 / Decimal(size) if size > 0 else Decimal(0)


@dataclass
class MetricsProvider:
    reader: Reader
    sampler: Sampler
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def values(
        self, namespace: str, resource: str, name: str, metric: str, label_selector: str
    ) -> list[MetricValue]:
        """Values of ``metric`` for one object (``name``) or those selected (``*``)."""
        if resource == PODS:
            _check(metric, POD_METRICS, resource)
            if name == WILDCARD:
                return await self._pods(namespace, label_selector, metric)
            return [await self._pod(namespace, name, metric)]
        if resource == ENCLAVE_CONTAINERS:
            _check(metric, EC_METRICS, resource)
            if name == WILDCARD:
                refs = await self.reader.enclave_containers(namespace, label_selector)
                found = [await self._enclave_container(ref, metric) for ref in refs]
                return [value for value in found if value is not None]
            ref = await self.reader.enclave_container(namespace, name)
            value = await self._enclave_container(ref, metric)
            if value is None:
                raise NotFoundError(
                    f"no {metric} for EnclaveContainer {namespace}/{name} yet: none of its "
                    "replicas' enclave runtimes reported EPC figures"
                )
            return [value]
        raise NotFoundError(
            f"no custom metrics for resource {resource!r}: this server describes "
            f"{PODS} and {ENCLAVE_CONTAINERS}"
        )

    async def _pod(self, namespace: str, name: str, metric: str) -> MetricValue:
        pod = await self.reader.pod(namespace, name)
        sample = await self.sampler.sample(pod) if pod.epc_request_bytes else None
        if sample is None:
            raise NotFoundError(
                f"no {metric} for pod {namespace}/{name}: "
                + (
                    "it requests no kubetee.io/epc (not an enclave replica)"
                    if not pod.epc_request_bytes
                    else "its enclave runtime has not reported EPC figures (not running yet?)"
                )
            )
        return _pod_value(pod, metric, sample)

    async def _pods(self, namespace: str, selector: str, metric: str) -> list[MetricValue]:
        pods = [p for p in await self.reader.pods(namespace, selector) if p.epc_request_bytes]
        samples = await self.sampler.samples(pods)
        return [_pod_value(p, metric, samples[p.name]) for p in pods if p.name in samples]

    async def _enclave_container(self, ref: EnclaveContainerRef, metric: str) -> MetricValue | None:
        described = DescribedObject(
            "kubetee.io/v1alpha1", "EnclaveContainer", ref.namespace, ref.name
        )
        if metric == CM_EPC_REQUESTED_BYTES:
            return MetricValue(described, metric, Decimal(ref.requested_bytes), self.clock())
        pods = [
            p for p in await self.reader.pods(ref.namespace, ref.selector) if p.epc_request_bytes
        ]
        samples = list((await self.sampler.samples(pods)).values())
        if not samples:
            return None
        used = sum(s.used_bytes for s in samples)
        size = sum(s.size_bytes for s in samples)
        value = utilization(used, size) if metric == CM_EPC_UTILIZATION else Decimal(used)
        return MetricValue(described, metric, value, max(s.at for s in samples))


def _pod_value(pod: PodRef, metric: str, sample: EnclaveSample) -> MetricValue:
    value = (
        utilization(sample.used_bytes, sample.size_bytes)
        if metric == CM_EPC_UTILIZATION
        else Decimal(sample.used_bytes)
    )
    return MetricValue(
        DescribedObject("v1", "Pod", pod.namespace, pod.name), metric, value, sample.at
    )


def _check(metric: str, offered: tuple[str, ...], resource: str) -> None:
    if metric not in offered:
        raise NotFoundError(
            f"the custom metric {metric!r} is not available for {resource}; "
            f"available: {', '.join(offered)}"
        )
