"""The JSON documents of the custom metrics API, as Kubernetes defines them.

``MetricValueList`` and ``MetricValue`` follow ``k8s.io/metrics/pkg/apis/custom_metrics/
v1beta2``; discovery (``APIGroupList``, ``APIGroup``, ``APIResourceList``) and errors
(``Status``) follow ``meta/v1``. Values are Kubernetes quantities: whole numbers as
they are, fractions in thousandths (``75500m``), the form the HPA reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta2"
GROUP_VERSION = f"{GROUP}/{VERSION}"
PREFIX = f"/apis/{GROUP_VERSION}"


@dataclass(frozen=True, slots=True)
class DescribedObject:
    """The object a metric value describes (a ``core/v1.ObjectReference``)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "apiVersion": self.api_version,
        }


@dataclass(frozen=True, slots=True)
class MetricValue:
    described: DescribedObject
    metric: str
    value: Decimal
    timestamp: datetime
    window_seconds: int = 0  # instantaneous gauges: not computed over a window


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """One metric the server offers for one resource (a discovery entry)."""

    resource: str  # "pods", "enclavecontainers.kubetee.io"
    metric: str
    namespaced: bool = True


def quantity(value: Decimal) -> str:
    """A Kubernetes quantity string for ``value`` (exact to a thousandth)."""
    milli = (value * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if milli % 1000 == 0:
        return str(int(milli // 1000))
    return f"{int(milli)}m"


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with seconds, as ``metav1.Time`` serializes."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_value_list(
    values: list[MetricValue], metric_selector: dict[str, Any] | None = None
) -> dict[str, Any]:
    metric: dict[str, Any] = {}
    items = []
    for value in values:
        metric = {"name": value.metric}
        if metric_selector is not None:
            metric["selector"] = metric_selector
        items.append(
            {
                "describedObject": value.described.to_json(),
                "metric": metric,
                "timestamp": timestamp(value.timestamp),
                "windowSeconds": value.window_seconds,
                "value": quantity(value.value),
            }
        )
    return {
        "kind": "MetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": items,
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``meta/v1.Status`` failure, what kubectl prints as ``Error from server (...)``."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _group_version() -> dict[str, str]:
    return {"groupVersion": GROUP_VERSION, "version": VERSION}


def api_group() -> dict[str, Any]:
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [_group_version()],
        "preferredVersion": _group_version(),
    }


def api_group_list() -> dict[str, Any]:
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list(metrics: list[MetricInfo]) -> dict[str, Any]:
    """Discovery of the version: one ``<resource>/<metric>`` entry per metric offered."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": f"{info.resource}/{info.metric}",
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
            for info in metrics
        ],
    }
