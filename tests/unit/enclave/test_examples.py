"""The example enclave in deploy/examples is built, signed and pinned consistently.

A change to the example workload without `make example-enclave` fails here, as would a
policy whose pins no longer match what the runtime will measure.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from enclave_runtime.enclave.bundle import bundle_configmap, from_configmap
from enclave_runtime.enclave.keys import sample_mrsigner
from enclave_runtime.enclave.loader import check_launch, from_directory
from enclave_runtime.enclave.manifest import MANIFEST_FILE, SIGSTRUCT_FILE, load_manifest
from kubetee.api.v1alpha1 import EnclaveContainerSpec

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "deploy" / "examples"
APP = EXAMPLES / "enclave-app"


def _documents(name: str) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def test_the_example_enclave_passes_einit_and_its_bundle_is_current() -> None:
    manifest = load_manifest(APP / MANIFEST_FILE)
    sigstruct = (APP / SIGSTRUCT_FILE).read_bytes()
    signed = check_launch(manifest, sigstruct, from_directory(APP))
    assert signed.mrsigner == sample_mrsigner()
    (configmap,) = _documents("enclave-bundle.yaml")
    assert configmap == bundle_configmap(manifest, sigstruct, APP, "demo-enclave")
    assert from_configmap(configmap) == (manifest, sigstruct)


def test_the_example_policy_pins_what_the_runtime_measures() -> None:
    signed = check_launch(
        load_manifest(APP / MANIFEST_FILE),
        (APP / SIGSTRUCT_FILE).read_bytes(),
        from_directory(APP),
    )
    ec = next(d for d in _documents("enclavecontainer.yaml") if d["kind"] == "EnclaveContainer")
    spec = EnclaveContainerSpec.model_validate(ec["spec"])
    assert spec.enclave.bundle is not None
    assert spec.enclave.bundle.name == "demo-enclave"
    policy = spec.attestation.policy
    assert policy.mrenclave == [signed.enclave_hash.hex()]
    assert policy.mrsigner == [signed.mrsigner.hex()]
    assert policy.isv_prod_id == signed.isv_prod_id
    assert policy.min_isv_svn is not None
    assert policy.min_isv_svn <= signed.isv_svn


def test_the_example_workload_serves_the_hash_of_its_secret(tmp_path: Path) -> None:
    secrets = tmp_path / "db"
    secrets.mkdir()
    (secrets / "password").write_bytes(b"change-me")
    process = subprocess.Popen(
        [sys.executable, str(APP / "app" / "server.py")],
        env={"KUBETEE_SECRETS_DIR": str(tmp_path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "with its secret" in line
        url = line.rsplit(" ", 1)[-1].strip().replace("0.0.0.0", "127.0.0.1")  # noqa: S104
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    document = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert document == {"secretSha256": hashlib.sha256(b"change-me").hexdigest()}
        assert "change-me" not in json.dumps(document)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
