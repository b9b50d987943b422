"""``kubetee device-plugin`` and ``kubetee node-agent`` as processes and as commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubetee.cli import main
from kubetee.deviceplugin.constants import FAULT_FILE_NAME


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_device_plugin_serves_until_sigterm_then_removes_its_sockets(plugin_dir: Path) -> None:
    env = {**os.environ, "KUBETEE_NODE_NAME": "node-7"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubetee.cli",
            "device-plugin",
            "--plugin-dir",
            str(plugin_dir),
            "--epc-mib",
            "128",
            "--enclaves",
            "16",
            "--log-format",
            "json",
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    sockets = [plugin_dir / "kubetee-epc.sock", plugin_dir / "kubetee-enclave.sock"]
    for socket in sockets:
        _wait_for(socket, process)

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0
    assert not any(socket.exists() for socket in sockets)
    records = [json.loads(line) for line in stderr.decode().splitlines()]
    assert any(
        "serving kubetee.io/epc" in r["message"]
        and "128 devices" in r["message"]
        and "node-7" in r["message"]
        for r in records
    )
    assert records[-1]["message"] == "device plugin for node node-7 stopped"


def test_fault_command_writes_the_control_file(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["device-plugin", "fault", "--plugin-dir", str(plugin_dir), "--unhealthy-mib", "4"])
        == 0
    )
    assert json.loads((plugin_dir / FAULT_FILE_NAME).read_text()) == {
        "unhealthyMib": 4,
        "unhealthyEnclaves": 0,
    }
    # --plugin-dir may also come before the action.
    assert main(["device-plugin", "--plugin-dir", str(plugin_dir), "fault", "--clear"]) == 0
    assert not (plugin_dir / FAULT_FILE_NAME).exists()
    assert FAULT_FILE_NAME in capsys.readouterr().out


def test_device_plugin_rejects_bad_flags_without_a_traceback(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBETEE_NODE_NAME", raising=False)
    code = main(["device-plugin", "--plugin-dir", str(plugin_dir), "--enclaves", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("kubetee device-plugin: error: --node-name / KUBETEE_NODE_NAME")
    assert "--enclaves / KUBETEE_ENCLAVES: Input should be greater than or equal to 1" in err
    assert "Traceback" not in err


def test_node_agent_rejects_a_missing_kubeconfig(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "node-agent",
            "--node-name",
            "n",
            "--plugin-dir",
            str(plugin_dir),
            "--kubeconfig",
            str(plugin_dir / "nope.yaml"),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        f"kubetee node-agent: error: --kubeconfig {plugin_dir / 'nope.yaml'}: no such file\n"
    )
