"""Device plugin and node agent metrics, read from their live state at scrape time."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from kubetee.deviceplugin.constants import ENCLAVE_RESOURCE, EPC_RESOURCE
from kubetee.deviceplugin.devices import DevicePool
from kubetee.metrics import names
from kubetee.metrics.node import DevicePluginCollector, NodeAgentCollector
from kubetee.metrics.serve import MetricsServer
from kubetee.nodeagent.plugin_client import ResourceCounts

from .conftest import scrape_url, value

MIB = 1024 * 1024


async def test_device_health_is_read_from_the_plugins_pools_at_each_scrape(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    pools = {
        EPC_RESOURCE: DevicePool(EPC_RESOURCE, "epc", 128),
        ENCLAVE_RESOURCE: DevicePool(ENCLAVE_RESOURCE, "enclave", 16),
    }
    registry.register(DevicePluginCollector("node-1", lambda: pools))
    server = serve()
    url = f"http://127.0.0.1:{server.port}/metrics"
    devices = names.DEVICE_PLUGIN_DEVICES

    _, before = scrape_url(url)
    await pools[EPC_RESOURCE].set_unhealthy_count(32)
    _, after = scrape_url(url)

    assert value(before, devices, node="node-1", resource=EPC_RESOURCE, health="Healthy") == 128
    assert value(after, devices, resource=EPC_RESOURCE, health="Healthy") == 96
    assert value(after, devices, resource=EPC_RESOURCE, health="Unhealthy") == 32
    assert value(after, devices, resource=ENCLAVE_RESOURCE, health="Healthy") == 16


def test_node_agent_exports_the_epc_it_published_in_bytes(
    registry: CollectorRegistry, serve: Callable[[], MetricsServer]
) -> None:
    published: dict[str, ResourceCounts] = {}
    registry.register(NodeAgentCollector("node-2", lambda: published))
    server = serve()
    url = f"http://127.0.0.1:{server.port}/metrics"

    _, nothing_yet = scrape_url(url)
    published[EPC_RESOURCE] = ResourceCounts(capacity=128, allocatable=100)
    published[ENCLAVE_RESOURCE] = ResourceCounts(capacity=16, allocatable=16)
    _, samples = scrape_url(url)

    assert names.NODE_EPC_CAPACITY_BYTES not in nothing_yet
    assert value(samples, names.NODE_EPC_CAPACITY_BYTES, node="node-2") == 128 * MIB
    assert value(samples, names.NODE_EPC_ALLOCATABLE_BYTES, node="node-2") == 100 * MIB
