"""The running device plugin: serve each resource, stay registered, apply faults.

Lifecycle, as the kubelet expects of a device plugin:

1. serve the DevicePlugin service of each resource on its own socket in the plugin dir;
2. call ``Registration.Register`` on ``<plugin dir>/kubelet.sock`` for each resource;
3. watch the dir: a new ``kubelet.sock`` means the kubelet restarted and forgot us, so
   register again; a removed plugin socket (the kubelet clears the dir when it starts)
   is served afresh; a changed fault file changes device health;
4. on stop, close the servers and remove the sockets.

The dir is polled (every ``poll_interval``, 0.2 s by default) rather than watched with
inotify: it is a handful of ``stat`` calls, needs no extra dependency, and is well
inside the seconds a kubelet restart or a fault takes to matter.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import grpc

from kubetee.deviceplugin.allocation import NodeContext, responder_for
from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import (
    API_VERSION,
    DEVICE_PREFIXES,
    ENCLAVE_RESOURCE,
    ENDPOINTS,
    EPC_RESOURCE,
    FAULT_FILE_NAME,
    KUBELET_SOCKET_NAME,
)
from kubetee.deviceplugin.devices import DevicePool
from kubetee.deviceplugin.errors import FaultFileError
from kubetee.deviceplugin.faults import NO_FAULTS, Faults, read_faults
from kubetee.deviceplugin.servicer import OPTIONS, DevicePluginService
from kubetee.deviceplugin.settings import DevicePluginSettings
from kubetee.deviceplugin.sockets import listen_unix

logger = logging.getLogger(__name__)

REGISTER_TIMEOUT = 5.0
MAX_RETRY_DELAY = 5.0
STOP_GRACE = 1.0

# A file's identity: a recreated socket differs in inode or change time even if the
# filesystem hands out the same inode number again.
FileIdentity = tuple[int, int, int]


def socket_identity(path: Path) -> FileIdentity | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(info.st_mode):
        return None
    return (info.st_dev, info.st_ino, info.st_ctime_ns)


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


@dataclass
class _Endpoint:
    """One resource's gRPC server and its registration state."""

    resource: str
    socket_path: Path
    service: DevicePluginService
    server: grpc.aio.Server | None = None
    registered_with: FileIdentity | None = None
    failed_with: FileIdentity | None = None
    failures: int = 0
    retry_at: float = 0.0


class DevicePlugin:
    """Both KubeTEE resources of one node, served and kept registered with the kubelet."""

    def __init__(self, settings: DevicePluginSettings) -> None:
        self.settings = settings
        context = NodeContext(settings.node_name, settings.quoting_socket)
        sizes = {EPC_RESOURCE: settings.epc_mib, ENCLAVE_RESOURCE: settings.enclaves}
        self.pools = {
            resource: DevicePool(resource, DEVICE_PREFIXES[resource], size)
            for resource, size in sizes.items()
        }
        self._endpoints = [
            _Endpoint(
                resource,
                settings.plugin_dir / ENDPOINTS[resource],
                DevicePluginService(pool, responder_for(resource, context)),
            )
            for resource, pool in self.pools.items()
        ]
        self.kubelet_socket = settings.plugin_dir / KUBELET_SOCKET_NAME
        self.fault_file = settings.plugin_dir / FAULT_FILE_NAME
        self._fault_signature: tuple[int, int, int] | None = None
        self._faults = NO_FAULTS
        # Whether the node's quoting service answers (None: not checked yet).
        self.quoting_up: bool | None = None
        self._next_quoting_check = 0.0

    @property
    def socket_paths(self) -> list[Path]:
        return [endpoint.socket_path for endpoint in self._endpoints]

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down and remove the sockets."""
        self.settings.plugin_dir.mkdir(parents=True, exist_ok=True)
        try:
            for endpoint in self._endpoints:
                await self._serve(endpoint)
            while not stop.is_set():
                await self.check_once()
                with suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval):
                        await stop.wait()
        finally:
            await self.close()

    async def check_once(self) -> None:
        """One pass of the watch loop (public so tests can step it)."""
        await self._apply_faults()
        await self._check_quoting()
        for endpoint in self._endpoints:
            if socket_identity(endpoint.socket_path) is None:
                logger.warning("%s was removed; serving it again", endpoint.socket_path)
                await self._serve(endpoint)
        kubelet = socket_identity(self.kubelet_socket)
        if kubelet is None:
            return
        for endpoint in self._endpoints:
            if endpoint.registered_with != kubelet:
                await self._register(endpoint, kubelet)

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()
        for endpoint in self._endpoints:
            if endpoint.server is not None:
                await endpoint.server.stop(STOP_GRACE)
                endpoint.server = None
            endpoint.socket_path.unlink(missing_ok=True)
        logger.info("device plugin for node %s stopped", self.settings.node_name)

    async def _serve(self, endpoint: _Endpoint) -> None:
        if endpoint.server is not None:
            await endpoint.server.stop(0)
        server = grpc.aio.server()
        pb_grpc.add_DevicePluginServicer_to_server(endpoint.service, server)
        listen_unix(server, endpoint.socket_path)
        await server.start()
        endpoint.server = server
        # A fresh socket is unknown to the kubelet until registered again.
        endpoint.registered_with = None
        pool = endpoint.service.pool
        logger.info(
            "serving %s on %s: %d devices (%s-0 .. %s-%d, %d healthy) for node %s",
            endpoint.resource,
            endpoint.socket_path,
            pool.size,
            DEVICE_PREFIXES[endpoint.resource],
            DEVICE_PREFIXES[endpoint.resource],
            pool.size - 1,
            pool.healthy_count,
            self.settings.node_name,
        )

    async def _register(self, endpoint: _Endpoint, kubelet: FileIdentity) -> None:
        loop = asyncio.get_running_loop()
        if endpoint.failed_with == kubelet and loop.time() < endpoint.retry_at:
            return
        request = pb.RegisterRequest(
            version=API_VERSION,
            endpoint=endpoint.socket_path.name,
            resource_name=endpoint.resource,
            options=OPTIONS,
        )
        try:
            async with grpc.aio.insecure_channel(f"unix:{self.kubelet_socket}") as channel:
                await pb_grpc.RegistrationStub(channel).Register(request, timeout=REGISTER_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            endpoint.failures = endpoint.failures + 1 if endpoint.failed_with == kubelet else 1
            endpoint.failed_with = kubelet
            delay = min(MAX_RETRY_DELAY, 0.25 * 2**endpoint.failures)
            endpoint.retry_at = loop.time() + delay
            logger.warning(
                "registering %s with the kubelet at %s failed (%s: %s); retrying in %.1fs",
                endpoint.resource,
                self.kubelet_socket,
                error.code().name,
                error.details(),
                delay,
            )
            return
        endpoint.registered_with = kubelet
        endpoint.failed_with = None
        endpoint.failures = 0
        logger.info(
            "registered %s (endpoint %s, API %s) with the kubelet at %s",
            endpoint.resource,
            endpoint.socket_path.name,
            API_VERSION,
            self.kubelet_socket,
        )

    async def _apply_faults(self) -> None:
        signature = _file_signature(self.fault_file)
        if signature == self._fault_signature:
            return
        self._fault_signature = signature
        try:
            faults = read_faults(self.fault_file)
        except FaultFileError as error:
            logger.warning("ignoring fault file, device health unchanged: %s", error)
            return
        await self.apply_faults(faults)

    async def _check_quoting(self) -> None:
        """A quoting service that accepts no connection makes every enclave slot
        unhealthy: the kubelet then lowers the node's allocatable, the scheduler places
        no new enclave there, and the node's status shows it (as a GPU plugin does
        with a failed GPU)."""
        if not self.settings.check_quoting:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_quoting_check:
            return
        self._next_quoting_check = loop.time() + self.settings.quoting_check_interval
        socket = self.settings.quoting_socket
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), 1.0)
            writer.close()
            up = True
        except (OSError, TimeoutError):
            up = False
        if up == self.quoting_up:
            return
        self.quoting_up = up
        if up:
            logger.info("quoting service at %s answers: enclave slots usable", socket)
        else:
            logger.warning(
                "quoting service at %s accepts no connection: every enclave slot is "
                "unhealthy until it does (no enclave here could attest)",
                socket,
            )
        await self.apply_faults(self._faults)

    async def apply_faults(self, faults: Faults) -> None:
        self._faults = faults
        wanted = {
            EPC_RESOURCE: faults.unhealthy_mib,
            ENCLAVE_RESOURCE: (
                self.pools[ENCLAVE_RESOURCE].size
                if self.quoting_up is False
                else faults.unhealthy_enclaves
            ),
        }
        for resource, count in wanted.items():
            pool = self.pools[resource]
            if count > pool.size:
                logger.warning(
                    "fault asks for %d unhealthy %s devices, only %d exist",
                    count,
                    resource,
                    pool.size,
                )
            if await pool.set_unhealthy_count(count):
                logger.info(
                    "health of %s changed: %d of %d devices healthy",
                    resource,
                    pool.healthy_count,
                    pool.size,
                )
