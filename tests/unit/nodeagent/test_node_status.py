"""The node status publisher stops when cancelled, whatever it was waiting on."""

from __future__ import annotations

import asyncio

import pytest

from kubetee.nodeagent.node_status import NodeStatusPublisher, ResourceList
from kubetee.nodeagent.plugin_client import ResourceCounts


class _Node:
    """A Node that already holds whatever is published (no patch needed)."""

    def read_resources(self, node_name: str) -> tuple[ResourceList, ResourceList]:
        del node_name
        return {}, {}

    def patch_resources(
        self, node_name: str, capacity: ResourceList, allocatable: ResourceList
    ) -> None:
        del node_name, capacity, allocatable


@pytest.mark.parametrize("turns", range(6))
async def test_a_cancel_that_meets_new_counts_still_stops_the_publisher(turns: int) -> None:
    # A device stream ending at agent shutdown wakes the publisher just as the agent
    # cancels it; asyncio.wait_for on 3.11 could lose that cancel and loop forever.
    publisher = NodeStatusPublisher(_Node(), "node-1", resync_interval=30, retry_interval=30)
    task = asyncio.create_task(publisher.run())
    for _ in range(3):
        await asyncio.sleep(0)
    publisher.update("kubetee.io/epc", ResourceCounts(4, 4))
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done == {task}
    assert task.cancelled()
