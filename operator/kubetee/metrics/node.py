"""Metrics of the per-node daemons: the EPC device plugin and the node agent.

Both are collectors read at scrape time from the daemon's own state, so the daemons'
code paths carry no metric calls: the device plugin's device pools (how many devices
of each resource are healthy) and the node agent's published counts (what the Node's
``status.capacity`` / ``status.allocatable`` hold). EPC devices are one MiB each, so
EPC counts are exported in bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubetee.deviceplugin.constants import EPC_RESOURCE, HEALTHY, UNHEALTHY
from kubetee.metrics import names

MIB = 1024 * 1024


class _DevicePool(Protocol):
    @property
    def size(self) -> int: ...

    @property
    def healthy_count(self) -> int: ...


class _Counts(Protocol):
    @property
    def capacity(self) -> int: ...

    @property
    def allocatable(self) -> int: ...


class DevicePluginCollector(Collector):
    """``kubetee_device_plugin_devices{node, resource, health}`` from the plugin's pools."""

    def __init__(self, node: str, pools: Callable[[], Mapping[str, _DevicePool]]) -> None:
        self._node = node
        self._pools = pools

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            names.DEVICE_PLUGIN_DEVICES,
            "Devices the EPC device plugin advertises to the kubelet, by resource and health "
            "(kubetee.io/epc devices are one MiB of EPC each).",
            labels=("node", "resource", "health"),
        )
        for resource, pool in sorted(dict(self._pools()).items()):
            healthy = pool.healthy_count
            family.add_metric((self._node, resource, HEALTHY), healthy)
            family.add_metric((self._node, resource, UNHEALTHY), pool.size - healthy)
        yield family


class NodeAgentCollector(Collector):
    """EPC capacity and allocatable the node agent published in the Node's status."""

    def __init__(self, node: str, published: Callable[[], Mapping[str, _Counts]]) -> None:
        self._node = node
        self._published = published

    def collect(self) -> Iterator[GaugeMetricFamily]:
        capacity = GaugeMetricFamily(
            names.NODE_EPC_CAPACITY_BYTES,
            "kubetee.io/epc capacity the node agent published in the Node's status.",
            labels=("node",),
        )
        allocatable = GaugeMetricFamily(
            names.NODE_EPC_ALLOCATABLE_BYTES,
            "kubetee.io/epc allocatable (healthy EPC) the node agent published in the "
            "Node's status.",
            labels=("node",),
        )
        counts = dict(self._published()).get(EPC_RESOURCE)
        if counts is not None:
            capacity.add_metric((self._node,), counts.capacity * MIB)
            allocatable.add_metric((self._node,), counts.allocatable * MIB)
        yield capacity
        yield allocatable
