"""The node agent's connection to one registered device plugin."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import HEALTHY
from kubetee.nodeagent.registration import PluginRegistration

logger = logging.getLogger(__name__)

ALLOCATE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ResourceCounts:
    """What the Node publishes for one resource."""

    capacity: int
    allocatable: int


class PluginClient:
    """Dials a plugin's socket; reports its devices as they change; allocates from it."""

    def __init__(
        self,
        registration: PluginRegistration,
        socket_path: Path,
        on_counts: Callable[[PluginClient, ResourceCounts], None],
    ) -> None:
        self.registration = registration
        self.socket_path = socket_path
        self._on_counts = on_counts
        self._channel = grpc.aio.insecure_channel(f"unix:{socket_path}")
        self._stub = pb_grpc.DevicePluginStub(self._channel)
        self.devices: dict[str, str] = {}
        self.connected = False

    @property
    def resource(self) -> str:
        return self.registration.resource

    def counts(self) -> ResourceCounts:
        healthy = sum(health == HEALTHY for health in self.devices.values())
        return ResourceCounts(len(self.devices), healthy if self.connected else 0)

    async def watch(self) -> None:
        """Consume ListAndWatch until the plugin goes away.

        As the kubelet does, a plugin that is gone keeps its capacity but has nothing
        allocatable, until it registers again.
        """
        try:
            async for response in self._stub.ListAndWatch(pb.Empty()):
                self.connected = True
                self.devices = {device.ID: device.health for device in response.devices}
                self._on_counts(self, self.counts())
        except grpc.aio.AioRpcError as error:
            logger.warning(
                "lost %s at %s: %s: %s",
                self.resource,
                self.socket_path,
                error.code().name,
                error.details(),
            )
        else:
            logger.warning("%s at %s ended its device stream", self.resource, self.socket_path)
        self.connected = False
        self._on_counts(self, self.counts())

    async def allocate(self, containers: Sequence[Sequence[str]]) -> pb.AllocateResponse:
        """Ask the plugin what each container needs for its devices (one ID list each)."""
        request = pb.AllocateRequest(
            container_requests=[pb.ContainerAllocateRequest(devices_ids=ids) for ids in containers]
        )
        return await self._stub.Allocate(request, timeout=ALLOCATE_TIMEOUT)

    async def close(self) -> None:
        await self._channel.close()
