"""Our .proto must stay wire-compatible with the kubelet's deviceplugin/v1beta1/api.proto."""

from __future__ import annotations

import pytest

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb

# (message, field, number, type) as in k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.proto
KUBELET_FIELDS = [
    ("DevicePluginOptions", "pre_start_required", 1, "bool"),
    ("DevicePluginOptions", "get_preferred_allocation_available", 2, "bool"),
    ("RegisterRequest", "version", 1, "string"),
    ("RegisterRequest", "endpoint", 2, "string"),
    ("RegisterRequest", "resource_name", 3, "string"),
    ("RegisterRequest", "options", 4, "message"),
    ("ListAndWatchResponse", "devices", 1, "message"),
    ("TopologyInfo", "nodes", 1, "message"),
    ("NUMANode", "ID", 1, "int64"),
    ("Device", "ID", 1, "string"),
    ("Device", "health", 2, "string"),
    ("Device", "topology", 3, "message"),
    ("PreStartContainerRequest", "devices_ids", 1, "string"),
    ("PreferredAllocationRequest", "container_requests", 1, "message"),
    ("ContainerPreferredAllocationRequest", "available_deviceIDs", 1, "string"),
    ("ContainerPreferredAllocationRequest", "must_include_deviceIDs", 2, "string"),
    ("ContainerPreferredAllocationRequest", "allocation_size", 3, "int32"),
    ("PreferredAllocationResponse", "container_responses", 1, "message"),
    ("ContainerPreferredAllocationResponse", "deviceIDs", 1, "string"),
    ("AllocateRequest", "container_requests", 1, "message"),
    ("ContainerAllocateRequest", "devices_ids", 1, "string"),
    ("CDIDevice", "name", 1, "string"),
    ("AllocateResponse", "container_responses", 1, "message"),
    ("ContainerAllocateResponse", "envs", 1, "message"),
    ("ContainerAllocateResponse", "mounts", 2, "message"),
    ("ContainerAllocateResponse", "devices", 3, "message"),
    ("ContainerAllocateResponse", "annotations", 4, "message"),
    ("ContainerAllocateResponse", "cdi_devices", 5, "message"),
    ("Mount", "container_path", 1, "string"),
    ("Mount", "host_path", 2, "string"),
    ("Mount", "read_only", 3, "bool"),
    ("DeviceSpec", "container_path", 1, "string"),
    ("DeviceSpec", "host_path", 2, "string"),
    ("DeviceSpec", "permissions", 3, "string"),
]

TYPE_NAMES = {8: "bool", 9: "string", 11: "message", 3: "int64", 5: "int32"}


@pytest.mark.parametrize(("message", "field", "number", "kind"), KUBELET_FIELDS)
def test_fields_match_the_kubelet(message: str, field: str, number: int, kind: str) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[field]
    assert (descriptor.number, TYPE_NAMES[descriptor.type]) == (number, kind)


def test_services_have_the_kubelet_method_paths() -> None:
    methods = {
        f"/{service.full_name}/{method.name}": (
            method.input_type.name,
            method.output_type.name,
            method.server_streaming,
        )
        for service in pb.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods == {
        "/v1beta1.Registration/Register": ("RegisterRequest", "Empty", False),
        "/v1beta1.DevicePlugin/GetDevicePluginOptions": ("Empty", "DevicePluginOptions", False),
        "/v1beta1.DevicePlugin/ListAndWatch": ("Empty", "ListAndWatchResponse", True),
        "/v1beta1.DevicePlugin/GetPreferredAllocation": (
            "PreferredAllocationRequest",
            "PreferredAllocationResponse",
            False,
        ),
        "/v1beta1.DevicePlugin/Allocate": ("AllocateRequest", "AllocateResponse", False),
        "/v1beta1.DevicePlugin/PreStartContainer": (
            "PreStartContainerRequest",
            "PreStartContainerResponse",
            False,
        ),
    }


def test_a_device_encodes_to_the_bytes_the_kubelet_expects() -> None:
    # Field 1 (ID) and 2 (health), both length-delimited: tags 0x0a and 0x12.
    encoded = pb.Device(ID="epc-0", health="Healthy").SerializeToString()
    assert encoded == b"\x0a\x05epc-0\x12\x07Healthy"
