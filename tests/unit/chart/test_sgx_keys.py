"""Where the chart puts the simulated SGX keys: the CA and TCB-signing keys only in the
simulated PCS; nodes register their own platform with a pod-bound token; the attestation
service gets the root certificate and collateral over the PCCS API, nothing more."""

from __future__ import annotations

from typing import Any

from kubetee.cli import build_parser
from tests.unit.chart.conftest import Manifest, Render, find, one, pod_specs

NODE = "DaemonSet/kt-kubetee-node"
ATTESTATION = "Deployment/kt-kubetee-attestation"
PCS = "Deployment/kt-kubetee-pcs"
AUTHORITY = "kubetee-sgx-authority"  # sgx.authoritySecret: root CA, PCK CAs, TCB signing keys


def _secret_refs(spec: Manifest) -> set[str]:
    """Every Secret a pod spec can read: volumes (also projected), env and envFrom."""
    refs = set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            refs.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                refs.add(source["secret"]["name"])
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                refs.add(source["secretRef"]["name"])
    return refs


def _args(spec: Manifest) -> list[list[str]]:
    return [c.get("args", []) for c in spec.get("containers", []) + spec.get("initContainers", [])]


def test_only_the_pcs_can_read_the_authority_keys(defaults: list[Manifest]) -> None:
    readers = {
        where for where, spec in pod_specs(defaults).items() if AUTHORITY in _secret_refs(spec)
    }
    assert readers == {PCS}


def test_the_node_daemonset_holds_no_ca_key_and_registers_with_a_bound_token(
    defaults: list[Manifest],
) -> None:
    spec = pod_specs(defaults)[NODE]
    assert _secret_refs(spec) == set()
    assert spec["automountServiceAccountToken"] is False
    for args in _args(spec):
        assert not any(a.startswith("--authority-dir") for a in args), args
    (token,) = [
        source["serviceAccountToken"]
        for volume in spec["volumes"]
        for source in volume.get("projected", {}).get("sources", [])
        if "serviceAccountToken" in source
    ]
    assert token["audience"] == "kubetee-pcs"
    assert token["expirationSeconds"] <= 3600
    register = next(
        c for c in spec["initContainers"] if c["args"][:2] == ["quoting-service", "register"]
    )
    parsed = build_parser().parse_args(register["args"])
    assert parsed.pcs_url == "https://kt-kubetee-pcs.kubetee-system.svc:8081"
    mounts = {m["mountPath"] for m in register["volumeMounts"]}
    assert str(parsed.token_file.parent) in mounts
    # The PCS CA comes as a ConfigMap: the node never gets the PCS's TLS key either.
    ca_volume = next(v for v in spec["volumes"] if v["name"] == "pcs-ca")
    assert ca_volume["configMap"]["name"] == "kt-kubetee-pcs-ca"
    assert "tls.key" not in one(defaults, "ConfigMap", "kt-kubetee-pcs-ca")["data"]


def test_the_attestation_service_gets_the_root_certificate_and_a_pccs_url(
    defaults: list[Manifest],
) -> None:
    spec = pod_specs(defaults)[ATTESTATION]
    assert AUTHORITY not in _secret_refs(spec)
    (args,) = _args(spec)
    parsed = build_parser().parse_args(args)
    assert parsed.pccs_url == "https://kt-kubetee-pcs.kubetee-system.svc:8081"
    assert parsed.platform_registry == "kubetee-system/kubetee-sgx-platforms"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["root-ca"]["configMap"]["name"] == "kubetee-sgx-root-ca"
    assert str(parsed.root_ca).startswith("/etc/kubetee/root-ca/")
    assert not any("authority" in a for a in args)


def test_only_the_pcs_writes_the_platform_registry(defaults: list[Manifest]) -> None:
    writers, readers = set(), set()
    for role in find(defaults, "Role") + find(defaults, "ClusterRole"):
        for rule in role.get("rules", []):
            if "configmaps" not in rule.get("resources", []):
                continue
            names: list[Any] = rule.get("resourceNames", [])
            if set(rule["verbs"]) & {"create", "update", "patch", "delete", "*"}:
                writers.add(role["metadata"]["name"])
            elif "kubetee-sgx-platforms" in names:
                readers.add(role["metadata"]["name"])
    assert writers == {"kt-kubetee-pcs"}
    # The attestation service checks quotes against it; the operator labels nodes by it.
    assert readers == {"kt-kubetee-attestation-platforms", "kt-kubetee-operator-platforms"}


def test_a_real_pccs_needs_only_its_url(render: Render) -> None:
    manifests = render(
        set_values=(
            "pcs.enabled=false",
            "sgx.rootCAConfigMap=",
            "attestationService.trust.pccsURL=https://pccs.example:8081/sgx/certification/v4/",
        )
    )
    assert find(manifests, "Deployment", "kt-kubetee-pcs") == []
    (args,) = _args(pod_specs(manifests)[ATTESTATION])
    parsed = build_parser().parse_args(args)
    assert parsed.pccs_url == "https://pccs.example:8081/sgx/certification/v4/"
    assert parsed.root_ca is None  # Intel's SGX Root CA, pinned in the package
    assert parsed.pccs_ca is None
