"""Settings, the fault control file, and the registration checks, without gRPC."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from kubetee.deviceplugin.api import deviceplugin_pb2 as pb
from kubetee.deviceplugin.devices import DevicePool
from kubetee.deviceplugin.errors import (
    ConfigurationError,
    FaultFileError,
    RegistrationError,
    SocketError,
    UnknownDeviceError,
)
from kubetee.deviceplugin.faults import NO_FAULTS, Faults, read_faults, write_faults
from kubetee.deviceplugin.settings import load_settings
from kubetee.deviceplugin.sockets import listen_unix
from kubetee.nodeagent.registration import validate_registration


def test_settings_come_from_env_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETEE_NODE_NAME", "from-env")
    monkeypatch.setenv("KUBETEE_EPC_MIB", "256")
    settings = load_settings(node_name="from-flag", epc_mib=None, enclaves=4)
    assert (settings.node_name, settings.epc_mib, settings.enclaves) == ("from-flag", 256, 4)
    assert settings.plugin_dir == Path("/var/lib/kubelet/device-plugins")


def test_bad_settings_name_the_flag_and_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBETEE_NODE_NAME", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(epc_mib=70000)
    message = str(caught.value)
    assert "--node-name / KUBETEE_NODE_NAME: Field required" in message
    assert "--epc-mib / KUBETEE_EPC_MIB: Input should be less than or equal to 65536" in message


def test_fault_file_round_trip_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    assert read_faults(path) == NO_FAULTS
    write_faults(path, Faults(unhealthy_mib=5, unhealthy_enclaves=1))
    assert read_faults(path) == Faults(5, 1)
    write_faults(path, NO_FAULTS)
    assert not path.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read fault file"),
        ("[1]", "expected a JSON object"),
        ('{"unhealthyMib": "3"}', "unhealthyMib must be a whole number >= 0, got '3'"),
        ('{"unhealthyMib": true}', "unhealthyMib must be a whole number"),
        ('{"unhealthyGpus": 1}', "unknown keys ['unhealthyGpus']"),
    ],
)
def test_invalid_fault_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "faults.json"
    path.write_text(content)
    with pytest.raises(FaultFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_faults(path)


async def test_faults_take_the_highest_devices_and_clamp_to_the_pool() -> None:
    pool = DevicePool("kubetee.io/epc", "epc", 4)
    assert await pool.set_unhealthy_count(9)
    assert pool.healthy_count == 0
    assert not await pool.set_unhealthy_count(4)
    assert await pool.set_unhealthy_count(1)
    assert [d.health for d in pool.snapshot()] == ["Healthy"] * 3 + ["Unhealthy"]
    with pytest.raises(UnknownDeviceError):
        pool.index_of("epc-4")


def _request(**fields: object) -> pb.RegisterRequest:
    values: dict[str, object] = {
        "version": "v1beta1",
        "endpoint": "kubetee-epc.sock",
        "resource_name": "kubetee.io/epc",
    }
    values.update(fields)
    return pb.RegisterRequest(**values)  # type: ignore[arg-type]


def test_a_valid_registration_is_accepted() -> None:
    registration = validate_registration(
        _request(options=pb.DevicePluginOptions(get_preferred_allocation_available=True))
    )
    assert registration.resource == "kubetee.io/epc"
    assert registration.preferred_allocation_available
    assert not registration.pre_start_required


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"version": "v1alpha"}, "unsupported device plugin API version 'v1alpha'"),
        ({"resource_name": "epc"}, "invalid resource name 'epc'"),
        ({"resource_name": "kubernetes.io/epc"}, "outside the kubernetes.io domain"),
        ({"resource_name": "x.kubernetes.io/epc"}, "outside the kubernetes.io domain"),
        ({"endpoint": "../kubelet.sock"}, "invalid endpoint '../kubelet.sock'"),
        ({"endpoint": "kubelet.sock"}, "invalid endpoint 'kubelet.sock'"),
        ({"endpoint": ""}, "invalid endpoint ''"),
    ],
)
def test_invalid_registrations_are_refused_with_the_reason(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(RegistrationError) as caught:
        validate_registration(_request(**fields))
    assert message in str(caught.value)


async def test_a_socket_path_over_the_unix_limit_is_refused_clearly() -> None:
    path = Path("/tmp") / ("d" * 100) / "kubetee-epc.sock"
    server = grpc.aio.server()
    with pytest.raises(SocketError, match=r"is 122 bytes, over the Unix limit of 107"):
        listen_unix(server, path)
    await server.stop(None)
