"""The Deployment of an EnclaveContainer: sidecar with EPC, gate, placement, ownership."""

from __future__ import annotations

import json
from typing import Any

from kubetee.api.v1alpha1 import EnclaveContainerSpec, EPCPoolSpec
from kubetee.controller.deployment import (
    Owner,
    Placement,
    build_deployment,
    serialized_selector,
)
from kubetee.controller.sidecar import RuntimeSettings
from tests.unit.controller.builders import ec_spec, pool_spec

OWNER = Owner("ns", "demo", "uid-1")
RUNTIME = RuntimeSettings(image="kubetee/kubetee:test", attestation_url="https://kbs:8443")


def _deployment(spec: dict[str, Any] | None = None, **pool: Any) -> dict[str, Any]:
    placement = Placement.of_pool("sgx", EPCPoolSpec.model_validate(pool_spec(**pool)))
    model = EnclaveContainerSpec.model_validate(spec or ec_spec())
    return build_deployment(OWNER, model, placement, RUNTIME)


def test_owned_by_the_enclave_container_and_selected_by_label() -> None:
    deployment = _deployment()
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert owner["kind"] == "EnclaveContainer"
    assert owner["uid"] == "uid-1"
    assert owner["controller"]
    assert deployment["spec"]["selector"]["matchLabels"] == {"kubetee.io/enclave-container": "demo"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "demo"
    assert labels["kubetee.io/enclave-container"] == "demo"
    assert deployment["spec"]["replicas"] == 3
    assert serialized_selector("demo") == "kubetee.io/enclave-container=demo"


def test_runtime_sidecar_holds_the_epc_and_starts_first() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["name"] == "kubetee-runtime"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["command"] == ["kubetee", "runtime"]
    assert sidecar["resources"]["requests"] == {"kubetee.io/epc": "64", "kubetee.io/enclave": "1"}
    assert sidecar["resources"]["limits"] == sidecar["resources"]["requests"]
    assert "startupProbe" in sidecar
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["KUBETEE_ATTESTATION_URL"] == "https://kbs:8443"
    config = json.loads(env["KUBETEE_ENCLAVE_CONFIG"])
    assert config["epcMiB"] == 64
    assert config["threads"] == 4
    # The user's container is untouched apart from what it asked for.
    assert pod["containers"] == [{"name": "app", "image": "busybox", "args": ["sleep"]}]


def test_readiness_gate_placement_and_scheduler_of_the_strategy() -> None:
    pod = _deployment(strategy="Spread")["spec"]["template"]["spec"]
    assert {"conditionType": "kubetee.io/attested"} in pod["readinessGates"]
    assert pod["schedulerName"] == "kubetee-spread"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "kubetee.io/sgx", "operator": "In", "values": ["true"]}]}
    ]
    assert _deployment()["spec"]["template"]["spec"]["schedulerName"] == "kubetee-binpack"


def test_pool_labels_are_added_to_every_user_term() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                ]
            }
        }
    }
    template = ec_spec()["template"]
    template["spec"]["affinity"] = affinity
    pod = _deployment(ec_spec(template=template))["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    for term in terms["nodeSelectorTerms"]:
        assert {"key": "kubetee.io/sgx", "operator": "In", "values": ["true"]} in term[
            "matchExpressions"
        ]


def test_file_secrets_mount_the_memory_volume_read_only_and_values_stay_out() -> None:
    spec = ec_spec(
        secrets=[
            {"name": "db", "secretKeyRef": {"name": "s", "key": "pw"}, "file": "db/pw"},
            {"name": "tok", "secretKeyRef": {"name": "s", "key": "t"}, "env": "TOKEN"},
        ]
    )
    deployment = _deployment(spec)
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kubetee-secrets"]["emptyDir"]["medium"] == "Memory"
    mounts = pod["containers"][0]["volumeMounts"]
    assert {
        "name": "kubetee-secrets",
        "mountPath": "/run/kubetee/secrets",
        "readOnly": True,
    } in mounts
    # The operator never puts a secretKeyRef into the pod: only attestation releases it.
    assert "secretKeyRef" not in json.dumps(deployment)


def test_config_map_files_are_projected_into_the_runtime() -> None:
    enclave = {"files": [{"path": "conf/a", "configMapKeyRef": {"name": "cm", "key": "k"}}]}
    pod = _deployment(ec_spec(enclave=enclave))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    sources = volumes["kubetee-enclave-files"]["projected"]["sources"]
    assert sources == [{"configMap": {"name": "cm", "items": [{"key": "k", "path": "conf/a"}]}}]


def test_spec_hash_changes_with_the_spec_only() -> None:
    first = _deployment()["metadata"]["annotations"]["kubetee.io/spec-hash"]
    again = _deployment()["metadata"]["annotations"]["kubetee.io/spec-hash"]
    scaled = _deployment(ec_spec(replicas=4))["metadata"]["annotations"]["kubetee.io/spec-hash"]
    assert first == again != scaled


def test_without_pool_no_affinity_and_default_scheduler() -> None:
    model = EnclaveContainerSpec.model_validate(ec_spec(poolRef=None))
    pod = build_deployment(OWNER, model, Placement.anywhere("kubetee-binpack"), RUNTIME)
    assert "affinity" not in pod["spec"]["template"]["spec"]
    assert pod["spec"]["template"]["spec"]["schedulerName"] == "kubetee-binpack"


def _enclave_spec(enclave: dict[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any]:
    spec = ec_spec()
    spec["enclave"] = enclave
    spec["template"]["spec"]["containers"] = containers
    spec["secrets"] = [
        {"name": "db", "secretKeyRef": {"name": "db", "key": "password"}, "file": "db/password"},
        {"name": "api", "secretKeyRef": {"name": "db", "key": "api"}, "env": "API_KEY"},
    ]
    return spec


def test_an_enclave_image_is_the_enclave_container_and_holds_the_epc() -> None:
    logger = {"name": "logger", "image": "busybox", "args": ["sleep"]}
    pod = _deployment(_enclave_spec({"image": "shop/web-enclave:1"}, [logger]))["spec"]["template"][
        "spec"
    ]
    enclave, other = pod["containers"]
    assert "initContainers" not in pod  # no sidecar: the runtime is the entry point
    assert enclave["name"] == "kubetee-enclave"
    assert enclave["image"] == "shop/web-enclave:1"
    assert enclave["command"][:3] == ["kubetee", "enclave", "run"]
    assert enclave["resources"]["limits"] == {"kubetee.io/epc": "64", "kubetee.io/enclave": "1"}
    assert enclave["startupProbe"]["exec"]["command"][-1] == "--attested"
    assert enclave["readinessProbe"]["exec"]["command"][-1] == "--attested"
    assert pod["readinessGates"] == [{"conditionType": "kubetee.io/attested"}]
    env = {e["name"]: e.get("value") for e in enclave["env"]}
    assert env["KUBETEE_ENCLAVE_PRIVATE_DIR"] == env["KUBETEE_STATE_DIR"] == "/run/kubetee/enclave"
    assert json.loads(env["KUBETEE_ENCLAVE_CONFIG"])["secrets"] == [
        {"name": "db", "file": "db/password"},
        {"name": "api", "env": "API_KEY"},
    ]
    # The other container gets nothing: no mount of any KubeTEE volume, no secret.
    assert other == logger
    private = next(v for v in pod["volumes"] if v["name"] == "kubetee-enclave-private")
    assert private["emptyDir"]["medium"] == "Memory"
    mounted = {m["name"] for c in pod["containers"][1:] for m in c.get("volumeMounts") or []}
    assert not mounted
    assert "password" not in json.dumps(pod).replace("db/password", "")


def test_an_enclave_bundle_runs_on_the_runtime_image_from_its_configmap() -> None:
    pod = _deployment(_enclave_spec({"bundle": {"name": "web-enclave"}}, []))["spec"]["template"][
        "spec"
    ]
    (enclave,) = pod["containers"]
    assert enclave["image"] == RUNTIME.image
    assert enclave["command"] == [
        "kubetee", "enclave", "run", "--bundle", "/run/kubetee/enclave-bundle",
    ]  # fmt: skip
    bundle = next(v for v in pod["volumes"] if v["name"] == "kubetee-enclave-bundle")
    assert bundle["configMap"]["name"] == "web-enclave"
    assert {"name": "kubetee-enclave-bundle", "mountPath": "/run/kubetee/enclave-bundle",
            "readOnly": True} in enclave["volumeMounts"]  # fmt: skip
