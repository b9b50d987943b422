"""The EnclaveContainer spec refuses what the CRD's CEL rules refuse, with the same words."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from kubetee.api.crdgen import ENCLAVE_CONTAINER, structural_schema
from kubetee.api.v1alpha1 import EnclaveContainerSpec

SIGNER = "ab" * 32
PINNED = {"mrsigner": [SIGNER]}


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 3,
        "epc": "64Mi",
        "poolRef": {"name": "sgx"},
        "template": {"spec": {"containers": [{"name": "app", "image": "busybox"}]}},
        "attestation": {"policy": PINNED},
    }
    spec.update(overrides)
    return spec


def test_minimal_spec_takes_defaults() -> None:
    spec = EnclaveContainerSpec.model_validate(_spec())
    assert spec.epc_mebibytes == 64
    assert spec.enclave.threads == 4
    assert spec.enclave.debug is False
    assert spec.attestation.policy.accepted_tcb_statuses == ["UpToDate", "SWHardeningNeeded"]
    assert spec.secrets == []


def test_unknown_container_fields_are_kept_for_the_pod() -> None:
    container = {"name": "app", "image": "busybox", "command": ["sleep", "1d"]}
    spec = EnclaveContainerSpec.model_validate(
        _spec(template={"spec": {"containers": [container], "hostname": "h"}})
    )
    dumped = spec.template.spec.model_dump()
    assert dumped["containers"][0]["command"] == ["sleep", "1d"]
    assert dumped["hostname"] == "h"


def test_unknown_spec_field_is_an_error() -> None:
    with pytest.raises(ValidationError, match="epcSize"):
        EnclaveContainerSpec.model_validate(_spec(epcSize="64Mi"))


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"epc": "-64Mi"}, "more than zero"),
        ({"epc": "100Ki"}, "whole number of MiB"),
        ({"replicas": -1}, "greater than or equal to 0"),
        (
            {"attestation": {"policy": {"mrenclave": ["abc"]}}},
            "should match pattern",
        ),
        (
            {
                "secrets": [
                    {"name": "db", "secretKeyRef": {"name": "s", "key": "k"}, "file": "a"},
                    {"name": "db", "secretKeyRef": {"name": "s", "key": "k"}, "env": "B"},
                ]
            },
            "secret names must be unique; repeated: \\['db'\\]",
        ),
        (
            {"secrets": [{"name": "db", "secretKeyRef": {"name": "s", "key": "k"}}]},
            "exactly one of file or env",
        ),
        (
            {
                "secrets": [
                    {
                        "name": "db",
                        "secretKeyRef": {"name": "s", "key": "k"},
                        "file": "a",
                        "env": "A",
                    }
                ]
            },
            "exactly one of file or env",
        ),
        (
            {
                "secrets": [
                    {"name": "db", "secretKeyRef": {"name": "s", "key": "k"}, "file": "../x"}
                ]
            },
            "must not contain",
        ),
        ({"enclave": {"heapSize": "128Mi"}}, "must fit in epc"),
        (
            {"enclave": {"isvProdId": 1}, "attestation": {"policy": {**PINNED, "isvProdId": 2}}},
            "differs from attestation.policy.isvProdId",
        ),
        (
            {"enclave": {"isvSvn": 1}, "attestation": {"policy": {**PINNED, "minIsvSvn": 2}}},
            "below attestation.policy.minIsvSvn",
        ),
        (
            {"enclave": {"files": [{"path": "a", "content": "x"}, {"path": "a", "content": "y"}]}},
            "paths must be unique",
        ),
        ({"enclave": {"files": [{"path": "a"}]}}, "exactly one of configMapKeyRef or content"),
        ({"template": {"spec": {"containers": []}}}, "containers is empty"),
        (
            {"enclave": {"image": "web:1", "bundle": {"name": "web"}}},
            "at most one of image or bundle",
        ),
        (
            {"enclave": {"image": "web:1", "files": [{"path": "a", "content": "x"}]}},
            "files are measured only for enclaves without an image or bundle",
        ),
        (
            {
                "enclave": {"image": "web:1"},
                "template": {
                    "spec": {
                        "containers": [{"name": "a", "image": "a"}],
                        "shareProcessNamespace": True,
                    }
                },
            },
            "shareProcessNamespace would let other containers read",
        ),
        (
            {
                "enclave": {"bundle": {"name": "web"}},
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "spy",
                                "image": "busybox",
                                "volumeMounts": [
                                    {"name": "kubetee-enclave-private", "mountPath": "/x"}
                                ],
                            }
                        ]
                    }
                },
            },
            "volumes named kubetee-\\* belong to the enclave runtime",
        ),
    ],
)
def test_invalid_specs_are_refused_with_a_clear_message(
    overrides: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        EnclaveContainerSpec.model_validate(_spec(**overrides))


def test_an_enclave_image_runs_the_workload_without_other_containers() -> None:
    spec = EnclaveContainerSpec.model_validate(
        _spec(
            enclave={"image": "registry.example/web-enclave:1"},
            template={"spec": {"containers": []}},
            # The manifest carries product id and SVN, not enclave.isvProdId/isvSvn.
            attestation={"policy": {"isvProdId": 7, "minIsvSvn": 3}},
        )
    )
    assert spec.enclave.runs_workload
    assert not EnclaveContainerSpec.model_validate(_spec()).enclave.runs_workload


def test_secret_with_one_destination_is_accepted() -> None:
    spec = EnclaveContainerSpec.model_validate(
        _spec(
            secrets=[
                {"name": "db", "secretKeyRef": {"name": "s", "key": "k"}, "file": "db/password"},
                {"name": "api", "secretKeyRef": {"name": "s", "key": "t"}, "env": "API_TOKEN"},
            ]
        )
    )
    assert [s.name for s in spec.secrets] == ["db", "api"]
    assert spec.secrets[0].secret_key_ref.key == "k"


@pytest.mark.parametrize(
    "attestation",
    [
        {},
        {"policy": {}},
        {"policy": {"minIsvSvn": 1}},
        {"policy": {"mrenclave": [], "mrsigner": []}},
    ],
)
def test_a_policy_that_pins_no_enclave_is_refused(attestation: dict[str, Any]) -> None:
    spec = _spec(attestation=attestation)
    if not attestation:
        del spec["attestation"]
    with pytest.raises(ValidationError, match=r"attestation\.policy pins no enclave identity"):
        EnclaveContainerSpec.model_validate(spec)


@pytest.mark.parametrize(
    "policy", [{"mrenclave": ["cd" * 32]}, PINNED, {**PINNED, "mrenclave": []}]
)
def test_either_pin_is_enough(policy: dict[str, Any]) -> None:
    spec = EnclaveContainerSpec.model_validate(_spec(attestation={"policy": policy}))
    assert spec.attestation.policy.pins_identity


def test_the_crd_requires_a_pin_and_stores_no_empty_pins() -> None:
    """The apiserver refuses the same (its CEL rule) and defaults no blank pin lists,
    which kubectl describe showed as empty MRENCLAVE/MRSIGNER fields."""
    schema = structural_schema(ENCLAVE_CONTAINER.spec)
    rules = [r for r in schema["x-kubernetes-validations"] if "pins no enclave" in r["message"]]
    assert len(rules) == 1
    assert "size(self.attestation.policy.mrenclave) > 0" in rules[0]["rule"]
    assert "size(self.attestation.policy.mrsigner) > 0" in rules[0]["rule"]
    policy = schema["properties"]["attestation"]["properties"]["policy"]["properties"]
    assert "default" not in policy["mrenclave"]
    assert "default" not in policy["mrsigner"]
