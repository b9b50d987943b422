"""The device plugin against a kubelet stand-in speaking the real v1beta1 gRPC API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.api import deviceplugin_pb2_grpc as pb_grpc
from kubetee.deviceplugin.constants import ENCLAVE_RESOURCE, EPC_RESOURCE, FAULT_FILE_NAME
from kubetee.deviceplugin.faults import NO_FAULTS, Faults, write_faults

from .conftest import ENCLAVES, EPC_MIB, KubeletStandIn, RunPlugin

Dial = Callable[[Path], "pb_grpc.DevicePluginAsyncStub"]  # a type-checking-only class


def health(response: pb.ListAndWatchResponse) -> dict[str, str]:
    return {device.ID: device.health for device in response.devices}


async def test_registers_both_resources_with_the_kubelet(
    kubelet: KubeletStandIn, run_plugin: RunPlugin
) -> None:
    await run_plugin()

    registrations = await kubelet.next_registrations(2)

    assert set(registrations) == {EPC_RESOURCE, ENCLAVE_RESOURCE}
    epc = registrations[EPC_RESOURCE]
    assert epc.version == "v1beta1"
    assert epc.endpoint == "kubetee-epc.sock"
    assert epc.options.get_preferred_allocation_available
    assert not epc.options.pre_start_required
    assert registrations[ENCLAVE_RESOURCE].endpoint == "kubetee-enclave.sock"


async def test_registers_once_a_kubelet_appears_after_the_plugin(
    plugin_dir: Path, run_plugin: RunPlugin
) -> None:
    await run_plugin()
    kubelet = KubeletStandIn(plugin_dir)
    await kubelet.start()
    try:
        registrations = await kubelet.next_registrations(2)
    finally:
        await kubelet.stop()
    assert set(registrations) == {EPC_RESOURCE, ENCLAVE_RESOURCE}


async def test_list_and_watch_advertises_one_device_per_mib_and_per_slot(
    kubelet: KubeletStandIn, run_plugin: RunPlugin, dial: Dial, plugin_dir: Path
) -> None:
    await run_plugin()
    registrations = await kubelet.next_registrations(2)

    epc = dial(plugin_dir / registrations[EPC_RESOURCE].endpoint)
    enclave = dial(plugin_dir / registrations[ENCLAVE_RESOURCE].endpoint)
    epc_list = await anext(aiter(epc.ListAndWatch(pb.Empty())))
    enclave_list = await anext(aiter(enclave.ListAndWatch(pb.Empty())))

    assert health(epc_list) == {f"epc-{i}": "Healthy" for i in range(EPC_MIB)}
    assert health(enclave_list) == {f"enclave-{i}": "Healthy" for i in range(ENCLAVES)}


async def test_a_fault_is_streamed_at_once_and_clearing_it_heals(
    kubelet: KubeletStandIn, run_plugin: RunPlugin, dial: Dial, plugin_dir: Path
) -> None:
    plugin = await run_plugin()
    stream = aiter(dial(plugin.socket_paths[0]).ListAndWatch(pb.Empty()))
    assert set(health(await anext(stream)).values()) == {"Healthy"}

    write_faults(plugin_dir / FAULT_FILE_NAME, Faults(unhealthy_mib=3))
    after_fault = health(await asyncio.wait_for(anext(stream), 10))

    assert [d for d, h in after_fault.items() if h == "Unhealthy"] == ["epc-5", "epc-6", "epc-7"]
    assert sum(h == "Healthy" for h in after_fault.values()) == EPC_MIB - 3

    write_faults(plugin_dir / FAULT_FILE_NAME, NO_FAULTS)
    healed = health(await asyncio.wait_for(anext(stream), 10))
    assert set(healed.values()) == {"Healthy"}


async def test_an_invalid_fault_file_leaves_health_alone(
    run_plugin: RunPlugin, plugin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = await run_plugin()
    (plugin_dir / FAULT_FILE_NAME).write_text('{"unhealthyMib": -1}')
    await plugin.check_once()
    assert plugin.pools[EPC_RESOURCE].healthy_count == EPC_MIB
    assert "unhealthyMib must be a whole number >= 0" in caplog.text


async def test_allocate_epc_returns_what_the_enclave_runtime_needs(
    run_plugin: RunPlugin, dial: Dial
) -> None:
    plugin = await run_plugin()
    stub = dial(plugin.socket_paths[0])

    response = await stub.Allocate(
        pb.AllocateRequest(
            container_requests=[
                pb.ContainerAllocateRequest(devices_ids=["epc-0", "epc-1", "epc-2"]),
                pb.ContainerAllocateRequest(devices_ids=["epc-3"]),
            ]
        )
    )

    first, second = response.container_responses
    assert dict(first.envs) == {
        "KUBETEE_EPC_MIB": "3",
        "KUBETEE_QUOTING_SOCKET": "/run/kubetee-test/quoting.sock",
        "KUBETEE_NODE_NAME": "node-1",
    }
    assert second.envs["KUBETEE_EPC_MIB"] == "1"
    assert [(d.host_path, d.container_path, d.permissions) for d in first.devices] == [
        ("/dev/sgx_enclave", "/dev/sgx_enclave", "rw"),
        ("/dev/sgx_provision", "/dev/sgx_provision", "rw"),
    ]
    assert [(m.host_path, m.container_path, m.read_only) for m in first.mounts] == [
        ("/run/kubetee-test", "/run/kubetee-test", True)
    ]


async def test_allocate_enclave_slots(run_plugin: RunPlugin, dial: Dial) -> None:
    plugin = await run_plugin()
    stub = dial(plugin.socket_paths[1])

    response = await stub.Allocate(
        pb.AllocateRequest(
            container_requests=[pb.ContainerAllocateRequest(devices_ids=["enclave-1"])]
        )
    )

    assert dict(response.container_responses[0].envs) == {
        "KUBETEE_ENCLAVE_SLOTS": "enclave-1",
        "KUBETEE_NODE_NAME": "node-1",
    }


async def test_allocate_of_an_unknown_device_is_invalid_argument(
    run_plugin: RunPlugin, dial: Dial
) -> None:
    plugin = await run_plugin()
    stub = dial(plugin.socket_paths[0])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Allocate(
            pb.AllocateRequest(
                container_requests=[pb.ContainerAllocateRequest(devices_ids=["epc-0", "gpu-9"])]
            )
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "kubetee.io/epc: unknown device 'gpu-9'; this plugin advertises epc-0 .. epc-7"
    )


async def test_allocate_of_an_unhealthy_device_is_failed_precondition(
    run_plugin: RunPlugin, dial: Dial
) -> None:
    plugin = await run_plugin()
    await plugin.apply_faults(Faults(unhealthy_mib=2))
    stub = dial(plugin.socket_paths[0])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Allocate(
            pb.AllocateRequest(
                container_requests=[pb.ContainerAllocateRequest(devices_ids=["epc-0", "epc-7"])]
            )
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "epc-7 are unhealthy" in caught.value.details()


async def test_options_preferred_allocation_and_prestart(run_plugin: RunPlugin, dial: Dial) -> None:
    plugin = await run_plugin()
    stub = dial(plugin.socket_paths[0])

    options = await stub.GetDevicePluginOptions(pb.Empty())
    preferred = await stub.GetPreferredAllocation(
        pb.PreferredAllocationRequest(
            container_requests=[
                pb.ContainerPreferredAllocationRequest(
                    available_deviceIDs=["epc-7", "epc-2", "epc-5", "epc-3"],
                    must_include_deviceIDs=["epc-5"],
                    allocation_size=3,
                )
            ]
        )
    )
    await stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=["epc-1"]))

    assert options.get_preferred_allocation_available
    assert list(preferred.container_responses[0].deviceIDs) == ["epc-5", "epc-2", "epc-3"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=["epc-99"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "clears_plugin_sockets",
    [
        pytest.param(True, id="kubelet-clears-the-dir"),
        pytest.param(False, id="only-kubelet-sock-recreated"),
    ],
)
async def test_re_registers_after_the_kubelet_socket_is_recreated(
    kubelet: KubeletStandIn,
    run_plugin: RunPlugin,
    dial: Dial,
    plugin_dir: Path,
    clears_plugin_sockets: bool,
) -> None:
    plugin = await run_plugin()
    await kubelet.next_registrations(2)

    # A restarting kubelet clears the plugin dir, plugin sockets included, then makes
    # a new kubelet.sock; the node agent only makes a new kubelet.sock.
    await kubelet.stop()
    if clears_plugin_sockets:
        for socket in plugin.socket_paths:
            socket.unlink()
    restarted = KubeletStandIn(plugin_dir)
    await restarted.start()
    try:
        registrations = await restarted.next_registrations(2)
        stub = dial(plugin_dir / registrations[EPC_RESOURCE].endpoint)
        devices = await anext(aiter(stub.ListAndWatch(pb.Empty())))
    finally:
        await restarted.stop()

    assert set(registrations) == {EPC_RESOURCE, ENCLAVE_RESOURCE}
    assert len(devices.devices) == EPC_MIB
    assert kubelet.requests.empty()


async def test_registration_refused_by_the_kubelet_is_retried(
    plugin_dir: Path, run_plugin: RunPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    class Refusing(KubeletStandIn):
        refusals = 0

        async def Register(  # noqa: N802
            self,
            request: pb.RegisterRequest,
            context: grpc.aio.ServicerContext[pb.RegisterRequest, pb.Empty],
        ) -> pb.Empty:
            if self.refusals < 2:
                self.refusals += 1
                await context.abort(grpc.StatusCode.UNAVAILABLE, "kubelet busy")
            return await super().Register(request, context)

    kubelet = Refusing(plugin_dir)
    await kubelet.start()
    try:
        await run_plugin()
        registrations = await kubelet.next_registrations(2)
    finally:
        await kubelet.stop()
    assert set(registrations) == {EPC_RESOURCE, ENCLAVE_RESOURCE}
    assert "failed (UNAVAILABLE: kubelet busy); retrying" in caplog.text


async def test_enclave_slots_are_unhealthy_while_the_quoting_service_is_down(
    run_plugin: RunPlugin, dial: Dial, plugin_dir: Path
) -> None:
    """No enclave could attest on a node whose quoting service accepts no connection."""
    socket = plugin_dir / "quoting" / "quoting.sock"
    socket.parent.mkdir()
    plugin = await run_plugin(
        check_quoting=True, quoting_socket=socket, quoting_check_interval=0.05
    )
    stream = aiter(dial(plugin.socket_paths[1]).ListAndWatch(pb.Empty()))
    down = health(await anext(stream))
    while set(down.values()) != {"Unhealthy"}:
        down = health(await asyncio.wait_for(anext(stream), 10))
    assert len(down) == ENCLAVES

    server = await asyncio.start_unix_server(lambda _r, w: w.close(), path=str(socket))
    try:
        healed = health(await asyncio.wait_for(anext(stream), 10))
        assert set(healed.values()) == {"Healthy"}
        assert plugin.quoting_up is True
    finally:
        server.close()
        await server.wait_closed()
