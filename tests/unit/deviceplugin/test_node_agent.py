"""The node agent between a real device plugin and a stand-in Kubernetes API server."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from kubernetes import client as k8s

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import ENCLAVE_RESOURCE, EPC_RESOURCE
from kubetee.deviceplugin.faults import Faults
from kubetee.deviceplugin.plugin import DevicePlugin
from kubetee.nodeagent.agent import NodeAgent
from kubetee.nodeagent.node_status import KubernetesNodeApi, NodeStatusPublisher

from .conftest import ENCLAVES, EPC_MIB, RunPlugin, eventually, plugin_settings

NODE = "node-1"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies merge-patch+json."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeApiServer:
    """Just ``nodes/{name}/status`` GET and PATCH, with the API's 404 Status body."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.patch_content_types: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def add_node(self, name: str) -> None:
        self.nodes[name] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            },
        }

    def resources(self, name: str, kind: str) -> dict[str, str]:
        return dict(self.nodes.get(name, {}).get("status", {}).get(kind, {}))

    def _not_found(self, name: str) -> web.Response:
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "message": f'nodes "{name}" not found',
                "code": 404,
            },
            status=404,
        )

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.nodes:
            return self._not_found(name)
        return web.json_response(self.nodes[name])

    async def _patch(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.patch_content_types.append(request.content_type)
        if name not in self.nodes:
            return self._not_found(name)
        patch = await request.json()
        # The status subresource ignores everything but status.
        self.nodes[name] = merge_patch(self.nodes[name], {"status": patch.get("status", {})})
        return web.json_response(copy.deepcopy(self.nodes[name]))

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/nodes/{name}/status", self._get)
        app.router.add_patch("/api/v1/nodes/{name}/status", self._patch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def api_server() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def agent(api_server: FakeApiServer, plugin_dir: Path) -> AsyncIterator[NodeAgent]:
    api_client = k8s.ApiClient(k8s.Configuration(host=api_server.url))
    publisher = NodeStatusPublisher(
        KubernetesNodeApi(api_client), NODE, resync_interval=0.2, retry_interval=0.05
    )
    node_agent = NodeAgent(NODE, plugin_dir, publisher)
    stop = asyncio.Event()
    task = asyncio.create_task(node_agent.run(stop))
    await eventually(node_agent.kubelet_socket.exists)
    yield node_agent
    stop.set()
    await task
    api_client.close()


async def test_publishes_plugin_devices_as_node_capacity_and_allocatable(
    api_server: FakeApiServer, agent: NodeAgent, run_plugin: RunPlugin
) -> None:
    api_server.add_node(NODE)
    await run_plugin()

    await eventually(lambda: EPC_RESOURCE in api_server.resources(NODE, "allocatable"))
    await eventually(lambda: ENCLAVE_RESOURCE in api_server.resources(NODE, "allocatable"))

    capacity = api_server.resources(NODE, "capacity")
    assert capacity == {
        "cpu": "4",
        "memory": "16Gi",
        "pods": "110",
        EPC_RESOURCE: str(EPC_MIB),
        ENCLAVE_RESOURCE: str(ENCLAVES),
    }
    assert api_server.resources(NODE, "allocatable")[EPC_RESOURCE] == str(EPC_MIB)
    assert set(api_server.patch_content_types) == {"application/merge-patch+json"}


async def test_a_fault_lowers_allocatable_but_not_capacity(
    api_server: FakeApiServer, agent: NodeAgent, run_plugin: RunPlugin
) -> None:
    api_server.add_node(NODE)
    plugin = await run_plugin()
    await eventually(lambda: EPC_RESOURCE in api_server.resources(NODE, "allocatable"))

    await plugin.apply_faults(Faults(unhealthy_mib=3, unhealthy_enclaves=1))

    await eventually(
        lambda: api_server.resources(NODE, "allocatable")[EPC_RESOURCE] == str(EPC_MIB - 3)
    )
    await eventually(
        lambda: api_server.resources(NODE, "allocatable")[ENCLAVE_RESOURCE] == str(ENCLAVES - 1)
    )
    assert api_server.resources(NODE, "capacity")[EPC_RESOURCE] == str(EPC_MIB)


async def test_waits_for_a_node_created_later(
    api_server: FakeApiServer, agent: NodeAgent, run_plugin: RunPlugin
) -> None:
    await run_plugin()
    await eventually(lambda: EPC_RESOURCE in agent.plugins)
    await asyncio.sleep(0.2)  # a few failed attempts against the missing Node
    assert api_server.patch_content_types == []

    api_server.add_node(NODE)

    await eventually(lambda: EPC_RESOURCE in api_server.resources(NODE, "capacity"))


async def test_restores_resources_someone_else_removed(
    api_server: FakeApiServer, agent: NodeAgent, run_plugin: RunPlugin
) -> None:
    api_server.add_node(NODE)
    await run_plugin()
    await eventually(lambda: EPC_RESOURCE in api_server.resources(NODE, "capacity"))

    api_server.add_node(NODE)  # status rewritten without our resources

    await eventually(lambda: EPC_RESOURCE in api_server.resources(NODE, "capacity"))


async def test_a_stopped_plugin_keeps_capacity_but_nothing_is_allocatable(
    api_server: FakeApiServer, agent: NodeAgent, plugin_dir: Path
) -> None:
    api_server.add_node(NODE)
    stop = asyncio.Event()
    task = asyncio.create_task(DevicePlugin(plugin_settings(plugin_dir)).run(stop))
    await eventually(lambda: EPC_RESOURCE in api_server.resources(NODE, "allocatable"))

    stop.set()
    await task

    await eventually(lambda: api_server.resources(NODE, "allocatable")[EPC_RESOURCE] == "0")
    assert api_server.resources(NODE, "capacity")[EPC_RESOURCE] == str(EPC_MIB)


async def test_the_plugin_client_stays_usable_for_allocation(
    api_server: FakeApiServer, agent: NodeAgent, run_plugin: RunPlugin
) -> None:
    await run_plugin()
    await eventually(lambda: agent.plugins.get(EPC_RESOURCE) is not None)

    response = await agent.plugins[EPC_RESOURCE].allocate([["epc-0", "epc-1"]])

    assert response.container_responses[0].envs["KUBETEE_EPC_MIB"] == "2"


async def test_a_restarted_agent_gets_the_plugin_to_register_again(
    api_server: FakeApiServer, plugin_dir: Path, run_plugin: RunPlugin
) -> None:
    api_server.add_node(NODE)
    await run_plugin()
    api_client = k8s.ApiClient(k8s.Configuration(host=api_server.url))
    try:
        for _ in range(2):
            publisher = NodeStatusPublisher(
                KubernetesNodeApi(api_client), NODE, resync_interval=0.2, retry_interval=0.05
            )
            node_agent = NodeAgent(NODE, plugin_dir, publisher)
            stop = asyncio.Event()
            task = asyncio.create_task(node_agent.run(stop))
            await eventually(
                lambda a=node_agent: set(a.plugins) == {EPC_RESOURCE, ENCLAVE_RESOURCE}
            )
            await eventually(lambda p=publisher: EPC_RESOURCE in p.published)
            stop.set()
            await task
    finally:
        api_client.close()


async def test_the_agent_refuses_a_bad_registration_over_grpc(agent: NodeAgent) -> None:
    async with grpc.aio.insecure_channel(f"unix:{agent.kubelet_socket}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.RegistrationStub(channel).Register(
                pb.RegisterRequest(
                    version="v1alpha1", endpoint="x.sock", resource_name="kubetee.io/epc"
                )
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unsupported device plugin API version 'v1alpha1'" in caught.value.details()
    assert agent.plugins == {}
