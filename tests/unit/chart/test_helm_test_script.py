"""files/helm-test.py against the real attestation service, started exactly as the chart
starts it: the rendered container arguments, with the rendered Secrets (generated
certificate, session key) where the pod would mount them.

Only the listening address is changed (a free loopback port) and a kubeconfig given
(the pod would use its service account); /healthz and /kbs/v0/auth never call the
Kubernetes API.
"""

from __future__ import annotations

import base64
import os
import runpy
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from enclave_runtime.kbs_protocol.models import KBS_PROTOCOL_VERSION
from enclave_runtime.quoting.provision import ensure_authority
from tests.unit.chart.conftest import CHART, Manifest, Render, one

SCRIPT = CHART / "files" / "helm-test.py"
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: unused}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def script() -> dict[str, Any]:
    return runpy.run_path(str(SCRIPT))


def test_script_speaks_the_services_protocol_version() -> None:
    namespace = script()
    assert namespace["KBS_PROTOCOL_VERSION"] == KBS_PROTOCOL_VERSION


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _materialize(manifests: list[Manifest], deployment: Manifest, root: Path) -> dict[str, Path]:
    """Write the pod's volumes under ``root``; mount path -> local directory."""
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {}
    for mount in container["volumeMounts"]:
        local = root / mount["name"]
        local.mkdir()
        volume = volumes[mount["name"]]
        if "secret" in volume:
            for key, value in one(manifests, "Secret", volume["secret"]["secretName"])[
                "data"
            ].items():
                (local / key).write_bytes(base64.b64decode(value))
        elif "configMap" in volume:
            name = volume["configMap"]["name"]
            if name == "kubetee-sgx-root-ca":  # the user's ConfigMap: the simulated root CA
                ensure_authority(root / "authority")
                (local / "root-ca.pem").write_bytes(
                    (root / "authority" / "root_ca.pem").read_bytes()
                )
            else:
                for key, value in one(manifests, "ConfigMap", name)["data"].items():
                    (local / key).write_text(value)
        mounts[mount["mountPath"]] = local
    return mounts


def _localize(arg: str, mounts: dict[str, Path]) -> str:
    """``--flag=/mount/path[/file]`` -> ``--flag=<local dir>[/file]``."""
    flag, _, value = arg.partition("=")
    for mount_path, local in mounts.items():
        if value == mount_path or value.startswith(f"{mount_path}/"):
            return f"{flag}={local}{value.removeprefix(mount_path)}"
    return arg


@dataclass(frozen=True)
class RunningService:
    url: str
    ca_file: Path  # the CA the chart hands to runtimes (and to the test Job)


@pytest.fixture(scope="module")
def chart_service(
    render: Render, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    manifests = render(set_values=("attestationService.tls.extraDNSNames={localhost}",))
    deployment = one(manifests, "Deployment", "kt-kubetee-attestation")
    root = tmp_path_factory.mktemp("attestation-pod")
    mounts = _materialize(manifests, deployment, root)
    args = [
        _localize(arg, mounts)
        .replace("$(POD_NAMESPACE)", "kubetee-system")
        .replace("$(POD_NAME)", "a")
        for arg in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    ]
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "kubetee.cli",
        *args,
        "--host=127.0.0.1",
        f"--port={port}",
        "--metrics-port=0",
        f"--kubeconfig={kubeconfig}",
    ]
    log = root / "service.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, port, log)
        yield RunningService(f"https://localhost:{port}", mounts["/etc/kubetee/tls"] / "ca.crt")
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"the service exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the service did not listen: {log.read_text()}")
            time.sleep(0.1)
        else:
            return


def _run_script(url: str, ca_file: Path) -> subprocess.CompletedProcess[str]:
    # Only the attestation check: the script's apiserver check needs a cluster (e2e).
    code = (
        "import runpy, sys; ns = runpy.run_path(sys.argv[1]); "
        "print(ns['check_attestation_service'](sys.argv[2], sys.argv[3]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(SCRIPT), url, str(ca_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_script_passes_against_the_service_as_the_chart_runs_it(
    chart_service: RunningService,
) -> None:
    result = _run_script(chart_service.url, chart_service.ca_file)
    assert result.returncode == 0, result.stderr
    assert "issues KBS nonces over verified TLS" in result.stdout


def test_script_fails_when_the_ca_is_not_the_services(
    chart_service: RunningService, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    ensure_authority(other)  # any CA certificate that did not sign the service's
    result = _run_script(chart_service.url, other / "root_ca.pem")
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_main_reports_a_failed_check_in_one_line(
    chart_service: RunningService, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("not-a-real-token\n")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "KUBETEE_TEST_APISERVER": "https://127.0.0.1:1",
        "KUBETEE_TEST_TOKEN_FILE": str(token),
        "KUBETEE_TEST_APISERVER_CA": str(chart_service.ca_file),
        "KUBETEE_TEST_ATTESTATION_URL": chart_service.url,
        "KUBETEE_TEST_ATTESTATION_CA": str(chart_service.ca_file),
    }
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout.startswith(
        "FAILED: cannot reach https://127.0.0.1:1/apis/kubetee.io/v1alpha1"
    )
    assert result.stderr == ""
