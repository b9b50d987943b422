"""The DevicePlugin gRPC service for one extended resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from kubetee.deviceplugin.allocation import ContainerResponder, preferred_devices
from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.devices import DevicePool
from kubetee.deviceplugin.errors import AllocationError, UnknownDeviceError

logger = logging.getLogger(__name__)

OPTIONS = pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: AllocationError) -> NoReturn:
    code = (
        grpc.StatusCode.INVALID_ARGUMENT
        if isinstance(error, UnknownDeviceError)
        else grpc.StatusCode.FAILED_PRECONDITION
    )
    logger.warning("refusing request: %s", error)
    await context.abort(code, str(error))


class DevicePluginService(pb_grpc.DevicePluginServicer):
    """Advertises a :class:`DevicePool` and answers allocations from it."""

    def __init__(self, pool: DevicePool, respond: ContainerResponder) -> None:
        self.pool = pool
        self._respond = respond

    async def GetDevicePluginOptions(
        self, request: pb.Empty, context: grpc.aio.ServicerContext[pb.Empty, pb.DevicePluginOptions]
    ) -> pb.DevicePluginOptions:
        return OPTIONS

    async def ListAndWatch(
        self,
        request: pb.Empty,
        context: grpc.aio.ServicerContext[pb.Empty, pb.ListAndWatchResponse],
    ) -> AsyncIterator[pb.ListAndWatchResponse]:
        async for devices in self.pool.watch():
            healthy = sum(device.healthy for device in devices)
            logger.info(
                "advertising %s: %d devices, %d healthy", self.pool.resource, len(devices), healthy
            )
            yield pb.ListAndWatchResponse(
                devices=[pb.Device(ID=device.id, health=device.health) for device in devices]
            )

    async def GetPreferredAllocation(
        self,
        request: pb.PreferredAllocationRequest,
        context: grpc.aio.ServicerContext[
            pb.PreferredAllocationRequest, pb.PreferredAllocationResponse
        ],
    ) -> pb.PreferredAllocationResponse:
        responses = []
        for container in request.container_requests:
            try:
                chosen = preferred_devices(
                    self.pool,
                    container.available_deviceIDs,
                    container.must_include_deviceIDs,
                    container.allocation_size,
                )
            except AllocationError as error:
                await _abort(context, error)
            responses.append(pb.ContainerPreferredAllocationResponse(deviceIDs=chosen))
        return pb.PreferredAllocationResponse(container_responses=responses)

    async def Allocate(
        self,
        request: pb.AllocateRequest,
        context: grpc.aio.ServicerContext[pb.AllocateRequest, pb.AllocateResponse],
    ) -> pb.AllocateResponse:
        responses = []
        for container in request.container_requests:
            device_ids = list(container.devices_ids)
            try:
                self.pool.check_usable(device_ids)
            except AllocationError as error:
                await _abort(context, error)
            responses.append(self._respond(device_ids))
            logger.info("allocated %s: %s", self.pool.resource, ", ".join(device_ids))
        return pb.AllocateResponse(container_responses=responses)

    async def PreStartContainer(
        self,
        request: pb.PreStartContainerRequest,
        context: grpc.aio.ServicerContext[
            pb.PreStartContainerRequest, pb.PreStartContainerResponse
        ],
    ) -> pb.PreStartContainerResponse:
        # Not required at registration (pre_start_required=False); a caller still gets
        # the same device checks as Allocate.
        try:
            self.pool.check_usable(list(request.devices_ids))
        except AllocationError as error:
            await _abort(context, error)
        return pb.PreStartContainerResponse()
