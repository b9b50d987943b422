"""Fixtures: short socket dirs, a kubelet stand-in speaking the real gRPC, a running plugin."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import KUBELET_SOCKET_NAME
from kubetee.deviceplugin.plugin import DevicePlugin
from kubetee.deviceplugin.settings import DevicePluginSettings

EPC_MIB = 8
ENCLAVES = 2
QUOTING_SOCKET = Path("/run/kubetee-test/quoting.sock")


async def eventually(
    predicate: Callable[[], bool], within: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until ``predicate()`` holds; fail the test if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            pytest.fail("condition never became true")
        await asyncio.sleep(interval)


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="kt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class KubeletStandIn(pb_grpc.RegistrationServicer):
    """The kubelet's side of registration: records each RegisterRequest it accepts."""

    def __init__(self, plugin_dir: Path) -> None:
        self.socket = plugin_dir / KUBELET_SOCKET_NAME
        self.requests: asyncio.Queue[pb.RegisterRequest] = asyncio.Queue()
        self._server: grpc.aio.Server | None = None

    async def Register(  # noqa: N802 - the gRPC method name
        self,
        request: pb.RegisterRequest,
        context: grpc.aio.ServicerContext[pb.RegisterRequest, pb.Empty],
    ) -> pb.Empty:
        await self.requests.put(request)
        return pb.Empty()

    async def start(self) -> None:
        self._server = grpc.aio.server()
        pb_grpc.add_RegistrationServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix:{self.socket}")
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None
        self.socket.unlink(missing_ok=True)

    async def next_registrations(self, count: int) -> dict[str, pb.RegisterRequest]:
        """The next ``count`` registrations, by resource name."""
        got = {}
        for _ in range(count):
            request = await asyncio.wait_for(self.requests.get(), 10)
            got[request.resource_name] = request
        return got


@pytest.fixture
async def kubelet(plugin_dir: Path) -> AsyncIterator[KubeletStandIn]:
    stand_in = KubeletStandIn(plugin_dir)
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


def plugin_settings(plugin_dir: Path, **extra: object) -> DevicePluginSettings:
    given: dict[str, object] = {
        "quoting_socket": QUOTING_SOCKET,
        "check_quoting": False,  # no quoting service here; its own test turns it on
        **extra,
    }
    return DevicePluginSettings(
        node_name="node-1",
        plugin_dir=plugin_dir,
        epc_mib=EPC_MIB,
        enclaves=ENCLAVES,
        poll_interval=0.02,
        **given,  # type: ignore[arg-type]
    )


RunPlugin = Callable[..., Awaitable[DevicePlugin]]


@pytest.fixture
async def run_plugin(plugin_dir: Path) -> AsyncIterator[RunPlugin]:
    """Start a DevicePlugin in this event loop; stopped (as by SIGTERM) at teardown."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(**extra: object) -> DevicePlugin:
        plugin = DevicePlugin(plugin_settings(plugin_dir, **extra))
        tasks.append(asyncio.create_task(plugin.run(stop)))
        await eventually(lambda: all(p.exists() for p in plugin.socket_paths))
        return plugin

    yield start
    stop.set()
    await asyncio.gather(*tasks)


@pytest.fixture
async def dial() -> AsyncIterator[Callable[[Path], pb_grpc.DevicePluginAsyncStub]]:
    """Open DevicePlugin stubs on plugin sockets, as the kubelet does after Register."""
    channels: list[grpc.aio.Channel] = []

    def open_stub(socket: Path) -> pb_grpc.DevicePluginAsyncStub:
        channel = grpc.aio.insecure_channel(f"unix:{socket}")
        channels.append(channel)
        return pb_grpc.DevicePluginStub(channel)

    yield open_stub
    for channel in channels:
        await channel.close()
