"""What Allocate and GetPreferredAllocation answer, as plain functions.

The kubelet merges the answers of all plugins a container uses, so each resource
contributes only its own part: ``kubetee.io/epc`` gives the EPC size, the quoting
service and the SGX device nodes; ``kubetee.io/enclave`` gives the enclave slot IDs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.constants import (
    ENCLAVE_RESOURCE,
    ENV_ENCLAVE_SLOTS,
    ENV_EPC_MIB,
    ENV_NODE_NAME,
    ENV_QUOTING_SOCKET,
    EPC_RESOURCE,
    SGX_ENCLAVE_DEVICE,
    SGX_PROVISION_DEVICE,
)
from kubetee.deviceplugin.devices import DevicePool

ContainerResponder = Callable[[Sequence[str]], pb.ContainerAllocateResponse]


@dataclass(frozen=True, slots=True)
class NodeContext:
    """What every allocation on this node shares."""

    node_name: str
    quoting_socket: Path


def epc_response(context: NodeContext, device_ids: Sequence[str]) -> pb.ContainerAllocateResponse:
    """One MiB per device; the runtime also needs the SGX device nodes and the quoting socket."""
    # The socket's directory, not the socket itself, is mounted: a restarted quoting
    # service makes a new socket file that a file bind mount would not follow.
    quoting_dir = str(context.quoting_socket.parent)
    return pb.ContainerAllocateResponse(
        envs={
            ENV_EPC_MIB: str(len(device_ids)),
            ENV_QUOTING_SOCKET: str(context.quoting_socket),
            ENV_NODE_NAME: context.node_name,
        },
        devices=[
            pb.DeviceSpec(container_path=path, host_path=path, permissions="rw")
            for path in (SGX_ENCLAVE_DEVICE, SGX_PROVISION_DEVICE)
        ],
        mounts=[pb.Mount(container_path=quoting_dir, host_path=quoting_dir, read_only=True)],
    )


def enclave_response(
    context: NodeContext, device_ids: Sequence[str]
) -> pb.ContainerAllocateResponse:
    return pb.ContainerAllocateResponse(
        envs={ENV_ENCLAVE_SLOTS: ",".join(device_ids), ENV_NODE_NAME: context.node_name}
    )


def responder_for(resource: str, context: NodeContext) -> ContainerResponder:
    builders = {EPC_RESOURCE: epc_response, ENCLAVE_RESOURCE: enclave_response}
    build = builders[resource]
    return lambda device_ids: build(context, device_ids)


def preferred_devices(
    pool: DevicePool, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """``must_include`` first, then the lowest-numbered available devices, ``size`` in all.

    Allocations pack from device 0 up while simulated faults take devices from the top,
    so a fault strikes free devices before allocated ones.
    """
    chosen = list(dict.fromkeys(must_include))
    for device_id in chosen:
        pool.index_of(device_id)
    taken = set(chosen)
    rest = sorted((d for d in set(available) if d not in taken), key=pool.index_of)
    return chosen + rest[: max(0, size - len(chosen))]
