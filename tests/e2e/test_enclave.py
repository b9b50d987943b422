"""The workload inside the enclave, on the real local cluster.

An author builds and signs the example workload with their own key and ships it as a
bundle ConfigMap; the EnclaveContainer pins its MRENCLAVE and MRSIGNER. The node agent
runs the pod's enclave container (`kubetee enclave run`) as a local process: it checks the
SIGSTRUCT and trusted files, attests, and starts the workload, which serves the hash of
the secret it received. A second container of the same pod gets nothing; a workload
changed by one byte and re-signed by an attacker gets no secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from enclave_runtime.enclave.build import build_directory
from enclave_runtime.enclave.bundle import bundle_configmap
from enclave_runtime.enclave.manifest import SIGSTRUCT_FILE, load_manifest
from enclave_runtime.sgx.enclave import EnclaveSigner
from kubetee.nodeagent.pod_filesystem import PodFilesystem
from tests.e2e.attestation_support import (
    AttestingOperator,
    attestation_service,
    attesting_operator,
    pod_dir,
)
from tests.e2e.conftest import REPO_ROOT, E2ECluster
from tests.e2e.operator_support import Api, api, free_nodes, wait_for

pytestmark = pytest.mark.e2e
__all__ = ["api", "attestation_service", "attesting_operator", "free_nodes"]

SECRET = b"e2e-enclave-password-\x07Zq"
EXAMPLE_APP = REPO_ROOT / "deploy" / "examples" / "enclave-app"
ATTESTED = "kubetee.io/attested"
SERVING = re.compile(r"serving with its secret on (http://\S+)")
AUTHOR = EnclaveSigner.generate()
ATTACKER = EnclaveSigner.generate()


def _built_bundle(
    directory: Path, signer: EnclaveSigner, name: str, *, program: bytes | None = None
) -> tuple[dict[str, Any], bytes, bytes]:
    """The example workload built and signed by ``signer``: ConfigMap, MRENCLAVE, MRSIGNER."""
    shutil.copytree(EXAMPLE_APP, directory)
    if program is not None:
        (directory / "app" / "server.py").write_bytes(program)
    built = build_directory(directory, signer)
    manifest = load_manifest(directory / "enclave.manifest.json")
    sigstruct = (directory / SIGSTRUCT_FILE).read_bytes()
    return bundle_configmap(manifest, sigstruct, directory, name), built.mrenclave, built.mrsigner


def _enclave_container(name: str, bundle: str, mrenclave: bytes, mrsigner: bytes) -> dict:
    spy = {
        "name": "spy",
        "image": "busybox:1.36",
        "command": ["sh", "-c", "cat /run/kubetee/enclave/*/secrets/db/password; sleep 3600"],
    }
    return {
        "apiVersion": "kubetee.io/v1alpha1",
        "kind": "EnclaveContainer",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "epc": "32Mi",
            "template": {"spec": {"containers": [spy]}},
            "enclave": {"bundle": {"name": bundle}},
            "attestation": {
                "policy": {
                    "mrenclave": [mrenclave.hex()],
                    "mrsigner": [mrsigner.hex()],
                    "isvProdId": 1,
                    "minIsvSvn": 2,
                }
            },
            "secrets": [
                {
                    "name": "db-password",
                    "secretKeyRef": {"name": "db", "key": "password"},
                    "file": "db/password",
                }
            ],
        },
    }


def _attested(pod: client.V1Pod) -> bool:
    return any(
        c.type == ATTESTED and c.status == "True" and c.reason == "Attested"
        for c in (pod.status.conditions or [])
    )


def _log(cluster: E2ECluster, pod: client.V1Pod) -> str:
    path = pod_dir(cluster, pod) / "kubetee-enclave.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _files_under(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


@pytest.mark.usefixtures("free_nodes")
def test_the_measured_workload_uses_its_secret_and_nothing_else_gets_it(
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    namespace: str,
    tmp_path: Path,
) -> None:
    api.core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "db"}, "data": {"password": base64.b64encode(SECRET).decode()}},
    )
    configmap, mrenclave, mrsigner = _built_bundle(tmp_path / "web", AUTHOR, "web-enclave")
    api.apply(configmap, namespace)
    api.apply(_enclave_container("web", "web-enclave", mrenclave, mrsigner), namespace)

    (pod,) = wait_for(
        "the enclave attested",
        lambda: [p for p in api.pods(namespace, "web") if _attested(p)],
        timeout=180,
        operator=attesting_operator,
    )
    found = wait_for("the workload serving", lambda: SERVING.search(_log(cluster, pod)), timeout=60)
    url = found.group(1).replace("0.0.0.0", "127.0.0.1")  # noqa: S104
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        served = json.loads(response.read())
    assert served == {"secretSha256": hashlib.sha256(SECRET).hexdigest()}
    log = _log(cluster, pod)
    assert f"EINIT passed: MRENCLAVE {mrenclave.hex()}, MRSIGNER {mrsigner.hex()}" in log
    assert SECRET.decode(errors="replace") not in log

    # The second container: the pod gives it no volume, no secret, no process namespace.
    spy = next(c for c in pod.spec.containers if c.name == "spy")
    assert not [m for m in spy.volume_mounts or [] if m.name.startswith("kubetee-")]
    assert not spy.env
    assert not pod.spec.share_process_namespace
    private = next(v for v in pod.spec.volumes if v.name == "kubetee-enclave-private")
    mounting = [
        c.name
        for c in pod.spec.containers
        for m in (c.volume_mounts or [])
        if m.name == private.name
    ]
    assert mounting == ["kubetee-enclave"]
    # What the kubelet would lay out for it (its mounts) holds no secret; the secret
    # exists only in the enclave's private, memory-backed directory.
    raw_pod = api.core.api_client.sanitize_for_serialization(pod)
    spy_view = PodFilesystem(tmp_path / "spy-pod", tmp_path / "spy-memory")
    spy_view.lay_out(raw_pod, raw_pod["spec"]["containers"][1], lambda *_: {}, {})
    for path in _files_under(spy_view.root):
        assert SECRET not in path.read_bytes()
    holders = [
        p
        for p in _files_under(pod_dir(cluster, pod))
        + _files_under(Path("/dev/shm") / f"kubetee-{pod.spec.node_name}-{pod.metadata.uid}")
        if SECRET in p.read_bytes()
    ]
    assert holders
    for path in holders:
        assert "/secrets/" in str(path)
        assert "kubetee-enclave-private" in str(path) or "run/kubetee/enclave/" in str(path)


@pytest.mark.usefixtures("free_nodes")
def test_one_changed_byte_resigned_by_an_attacker_gets_no_secret(
    cluster: E2ECluster,
    api: Api,
    attesting_operator: AttestingOperator,
    namespace: str,
    tmp_path: Path,
) -> None:
    api.core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "db"}, "data": {"password": base64.b64encode(SECRET).decode()}},
    )
    _, genuine, author = _built_bundle(tmp_path / "genuine", AUTHOR, "unused")
    program = (EXAMPLE_APP / "app" / "server.py").read_bytes()
    tampered_program = program.replace(b"PORT = 8080", b"PORT = 8081")
    assert len(tampered_program) == len(program)
    assert tampered_program != program
    configmap, tampered, attacker = _built_bundle(
        tmp_path / "tampered", ATTACKER, "web-enclave", program=tampered_program
    )
    assert tampered != genuine
    assert attacker != author
    api.apply(configmap, namespace)
    api.apply(_enclave_container("web", "web-enclave", genuine, author), namespace)

    def refused() -> str | None:
        events = api.core.list_namespaced_event(namespace).items
        return next((e.message for e in events if e.reason == "MeasurementMismatch"), None)

    message = wait_for("the refusal", refused, timeout=180, operator=attesting_operator)
    assert tampered.hex() in message
    for pod in api.pods(namespace, "web"):
        assert not _attested(pod)
        log = _log(cluster, pod)
        assert "starting the workload" not in log  # it never started
        assert not SERVING.search(log)
        assert "attestation failed, the workload gets no secrets" in log
