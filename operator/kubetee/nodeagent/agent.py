"""The node agent: the device manager of a kubelet, for one node without a kubelet."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc

from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import KUBELET_SOCKET_NAME
from kubetee.deviceplugin.sockets import listen_unix
from kubetee.nodeagent.node_status import NodeStatusPublisher
from kubetee.nodeagent.plugin_client import PluginClient, ResourceCounts
from kubetee.nodeagent.registration import PluginRegistration, RegistrationService

logger = logging.getLogger(__name__)

STOP_GRACE = 1.0


class NodeAgent:
    """Serves Registration, follows each registered plugin, publishes node resources."""

    def __init__(self, node_name: str, plugin_dir: Path, publisher: NodeStatusPublisher) -> None:
        self.node_name = node_name
        self.plugin_dir = plugin_dir
        self.publisher = publisher
        # resource -> client of the plugin currently registered for it. A pod watcher
        # calls plugins[resource].allocate(...) for pods bound to this node.
        self.plugins: dict[str, PluginClient] = {}
        self._watches: dict[PluginClient, asyncio.Task[None]] = {}
        self._server: grpc.aio.Server | None = None

    @property
    def kubelet_socket(self) -> Path:
        return self.plugin_dir / KUBELET_SOCKET_NAME

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then remove ``kubelet.sock`` and disconnect."""
        await self.start()
        publishing = asyncio.create_task(self.publisher.run())
        try:
            await stop.wait()
        finally:
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
            await self.close()

    async def start(self) -> None:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        # A new kubelet.sock is how plugins learn that the kubelet (re)started and
        # must register again; a stale one from a previous run is replaced.
        server = grpc.aio.server()
        pb_grpc.add_RegistrationServicer_to_server(RegistrationService(self.register), server)
        listen_unix(server, self.kubelet_socket)
        await server.start()
        self._server = server
        logger.info(
            "node agent for node %s accepting device plugins on %s",
            self.node_name,
            self.kubelet_socket,
        )

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(STOP_GRACE)
            self._server = None
        self.kubelet_socket.unlink(missing_ok=True)
        for task in self._watches.values():
            task.cancel()
        await asyncio.gather(*self._watches.values(), return_exceptions=True)
        logger.info("node agent for node %s stopped", self.node_name)

    def register(self, registration: PluginRegistration) -> None:
        """Follow a newly registered plugin, replacing any earlier one for its resource."""
        previous = self.plugins.get(registration.resource)
        if previous is not None and previous in self._watches:
            self._watches[previous].cancel()
        client = PluginClient(
            registration, self.plugin_dir / registration.endpoint, self._counts_changed
        )
        self.plugins[registration.resource] = client
        self._watches[client] = asyncio.create_task(self._follow(client))

    async def _follow(self, client: PluginClient) -> None:
        try:
            await client.watch()
        finally:
            del self._watches[client]
            await client.close()

    def _counts_changed(self, client: PluginClient, counts: ResourceCounts) -> None:
        # A replaced plugin's last words must not overwrite its successor's counts.
        if self.plugins.get(client.resource) is client:
            self.publisher.update(client.resource, counts)
