"""Publishing extended-resource counts on the Node, as the kubelet does.

Only ``status.capacity`` and ``status.allocatable`` entries of our resources are
touched, with a JSON merge patch on the ``status`` subresource: maps merge key by key,
so KWOK's heartbeats and the other resources (cpu, memory, pods) are left alone.

The publisher compares before it patches and re-checks every ``resync_interval``, so
a Node created later, or one whose status someone else rewrote, gets our counts back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import suppress
from typing import Protocol

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubetee.nodeagent.plugin_client import ResourceCounts

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0
MERGE_PATCH = "application/merge-patch+json"

ResourceList = dict[str, str]


class NodeNotFoundError(LookupError):
    """The Node does not exist (yet)."""


class NodeApi(Protocol):
    """The two calls the publisher makes; blocking, run in a worker thread."""

    def read_resources(self, node_name: str) -> tuple[ResourceList, ResourceList]:
        """``(capacity, allocatable)`` of the Node, or :class:`NodeNotFoundError`."""
        ...

    def patch_resources(
        self, node_name: str, capacity: ResourceList, allocatable: ResourceList
    ) -> None: ...


class KubernetesNodeApi:
    """:class:`NodeApi` over the Kubernetes API (``nodes/status``)."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._core = k8s.CoreV1Api(api_client)

    def read_resources(self, node_name: str) -> tuple[ResourceList, ResourceList]:
        try:
            node = self._core.read_node_status(node_name, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                raise NodeNotFoundError(node_name) from None
            raise
        status = node.status
        if status is None:
            return {}, {}
        return dict(status.capacity or {}), dict(status.allocatable or {})

    def patch_resources(
        self, node_name: str, capacity: ResourceList, allocatable: ResourceList
    ) -> None:
        try:
            self._core.patch_node_status(
                node_name,
                {"status": {"capacity": capacity, "allocatable": allocatable}},
                _content_type=MERGE_PATCH,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                raise NodeNotFoundError(node_name) from None
            raise


def _wanted(counts: Mapping[str, ResourceCounts]) -> tuple[ResourceList, ResourceList]:
    capacity = {resource: str(c.capacity) for resource, c in counts.items()}
    allocatable = {resource: str(c.allocatable) for resource, c in counts.items()}
    return capacity, allocatable


def _covers(current: ResourceList, wanted: ResourceList) -> bool:
    return all(current.get(key) == value for key, value in wanted.items())


class NodeStatusPublisher:
    """Keeps the Node's extended resources equal to the latest plugin counts."""

    def __init__(
        self,
        api: NodeApi,
        node_name: str,
        resync_interval: float = 10.0,
        retry_interval: float = 1.0,
    ) -> None:
        self._api = api
        self.node_name = node_name
        self._resync_interval = resync_interval
        self._retry_interval = retry_interval
        self._counts: dict[str, ResourceCounts] = {}
        self._wake = asyncio.Event()
        self._waiting_for_node = False
        self._last_error = ""
        # What the Node was last seen or made to hold, for tests and diagnostics.
        self.published: dict[str, ResourceCounts] = {}

    def update(self, resource: str, counts: ResourceCounts) -> None:
        """Record new counts; the Node is patched right away."""
        self._counts[resource] = counts
        self._wake.set()

    async def run(self) -> None:
        """Publish forever (cancel to stop)."""
        while True:
            self._wake.clear()
            synced = await self.sync_once()
            delay = self._resync_interval if synced else self._retry_interval
            # Not wait_for: on 3.11 it can swallow a cancellation that arrives as the
            # event is set, and this loop would then outlive the agent's stop.
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def sync_once(self) -> bool:
        """Make the Node hold the current counts; False if it must be retried."""
        counts = dict(self._counts)
        if not counts:
            return True
        capacity, allocatable = _wanted(counts)
        try:
            current = await asyncio.to_thread(self._api.read_resources, self.node_name)
            if not (_covers(current[0], capacity) and _covers(current[1], allocatable)):
                await asyncio.to_thread(
                    self._api.patch_resources, self.node_name, capacity, allocatable
                )
                logger.info(
                    "node %s: %s",
                    self.node_name,
                    ", ".join(
                        f"{r} capacity {c.capacity} allocatable {c.allocatable}"
                        for r, c in sorted(counts.items())
                    ),
                )
        except NodeNotFoundError:
            if not self._waiting_for_node:
                logger.info("node %s does not exist yet; retrying", self.node_name)
                self._waiting_for_node = True
            return False
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            # Said once per distinct failure: the API server may be down for a while.
            message = _brief(error)
            if message != self._last_error:
                logger.warning("cannot update node %s (retrying): %s", self.node_name, message)
                self._last_error = message
            return False
        self._waiting_for_node = False
        self._last_error = ""
        self.published = counts
        return True


def _brief(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return str(error)
