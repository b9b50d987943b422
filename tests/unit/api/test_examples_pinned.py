"""The example EnclaveContainer pins the identity its own enclave measures to.

If spec.enclave changes, MRENCLAVE changes with it and the example's replicas would be
refused: this catches a pin left behind (`kubetee runtime measure` prints the new one).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from enclave_runtime.runtime.enclave import identity_of, load_signer
from enclave_runtime.runtime.settings import EnclaveConfig
from kubetee.api.v1alpha1 import EnclaveContainerSpec
from kubetee.controller.sidecar import enclave_config

EXAMPLE = Path(__file__).parents[3] / "deploy" / "examples" / "enclavecontainer.yaml"


def test_the_example_pins_the_measurement_of_its_enclave() -> None:
    manifest = next(
        d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "EnclaveContainer"
    )
    spec = EnclaveContainerSpec.model_validate(manifest["spec"])
    config = enclave_config(manifest["metadata"]["name"], "default", spec)
    identity = identity_of(EnclaveConfig.model_validate(config), None, load_signer(None))
    policy = spec.attestation.policy
    assert policy.mrenclave == [identity.mrenclave.hex()]
    assert policy.mrsigner == [identity.mrsigner.hex()]
