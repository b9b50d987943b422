"""The chart's workloads: restricted security, arguments the real CLI accepts, and
Services, probes, volumes and monitors that point at things that exist."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetee.cli import build_parser
from tests.unit.chart.conftest import (
    Manifest,
    Render,
    find,
    one,
    pod_specs,
    scenario_files,
    template,
)

KUBETEE_IMAGE = "kubetee/kubetee:0.1.0"
NODE_DAEMONSET = "DaemonSet/kt-kubetee-node"
_ENV_REFERENCE = re.compile(r"\$\((\w+)\)")


def containers(spec: Manifest) -> list[Manifest]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(scope="module", params=scenario_files(), ids=lambda p: Path(p).stem)
def scenario(request: pytest.FixtureRequest, render: Render) -> list[Manifest]:
    return render(request.param)


def test_pods_outside_the_node_daemonset_are_restricted(scenario: list[Manifest]) -> None:
    for key, spec in pod_specs(scenario).items():
        if key.startswith("DaemonSet/"):
            continue
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, key
        assert pod["runAsUser"] != 0, key
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, key
        for container in containers(spec):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, key
            assert security["readOnlyRootFilesystem"] is True, key
            assert security["capabilities"]["drop"] == ["ALL"], key
            assert not security.get("privileged"), key


def test_node_daemonset_is_root_without_capabilities_or_host_namespaces(
    defaults: list[Manifest],
) -> None:
    spec = pod_specs(defaults)[NODE_DAEMONSET]
    # Root only to create sockets in root-owned host directories (values.yaml says so).
    assert spec["securityContext"]["runAsUser"] == 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    for container in containers(spec):
        security = container["securityContext"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert not security.get("privileged")
    host_paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == {"/var/lib/kubelet/device-plugins", "/var/run/kubetee-quoting"}
    assert spec["nodeSelector"] == {"kubetee.io/sgx": "true"}


def test_every_container_has_resources_and_a_pinned_image(scenario: list[Manifest]) -> None:
    for key, spec in pod_specs(scenario).items():
        for container in containers(spec):
            assert container["resources"]["requests"], key
            assert container["resources"]["limits"]["memory"], key
            assert (
                ":" in container["image"].rsplit("/", 1)[-1] or "@sha256:" in container["image"]
            ), key


def test_image_defaults_to_app_version_and_a_digest_wins(render: Render) -> None:
    images = {
        c["image"]
        for spec in pod_specs(render()).values()
        for c in containers(spec)
        if "kube-scheduler" not in c["image"]
    }
    assert images == {KUBETEE_IMAGE}
    digest = "sha256:" + "ab" * 32
    pinned = render(set_values=(f"image.digest={digest}", "image.tag=ignored"))
    images = {
        c["image"]
        for spec in pod_specs(pinned).values()
        for c in containers(spec)
        if "kube-scheduler" not in c["image"]
    }
    assert images == {f"kubetee/kubetee@{digest}"}


def _kubetee_invocations(manifests: list[Manifest]) -> list[tuple[str, list[str], Manifest]]:
    found = []
    for key, spec in pod_specs(manifests).items():
        for container in containers(spec):
            if "kube-scheduler" in container["image"] or container.get("command"):
                continue  # kube-scheduler; the test Job runs python
            env = {e["name"]: "value" for e in container.get("env", [])}
            args = []
            for arg in container["args"]:
                for name in _ENV_REFERENCE.findall(arg):
                    assert name in env, f"{key}: {arg} names an unset variable"
                args.append(_ENV_REFERENCE.sub("value", arg))
            found.append((f"{key}/{container['name']}", args, container))
    return found


def test_every_kubetee_command_parses_with_the_real_cli(scenario: list[Manifest]) -> None:
    parser = build_parser()
    invocations = _kubetee_invocations(scenario)
    for where, args, _ in invocations:
        try:
            parsed = parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"{where}: kubetee rejects {args}")
        assert callable(parsed.func), where


def test_every_component_runs_in_the_defaults(defaults: list[Manifest]) -> None:
    commands = {" ".join(args[:2]) for _, args, _ in _kubetee_invocations(defaults)}
    assert commands == {
        "operator --all-namespaces",
        "attestation-service serve",
        "quoting-service provision",
        "quoting-service register",
        "quoting-service serve",
        "pcs serve",
        "device-plugin --node-name=value",
        "metrics-apiserver serve",
    }


def test_device_plugin_and_quoting_service_share_the_socket_path(
    defaults: list[Manifest],
) -> None:
    parser = build_parser()
    args = {
        where.rsplit("/", 1)[-1]: parser.parse_args(a)
        for where, a, _ in _kubetee_invocations(defaults)
    }
    socket = Path(args["quoting-service"].socket)
    assert Path(args["device-plugin"].quoting_socket) == socket
    # Allocate mounts the socket's directory at the same path into enclaves: the container
    # must see it where the host has it.
    spec = pod_specs(defaults)[NODE_DAEMONSET]
    host_dirs = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    quoting = next(c for c in spec["containers"] if c["name"] == "quoting-service")
    mount = next(m for m in quoting["volumeMounts"] if m["mountPath"] == str(socket.parent))
    assert host_dirs[mount["name"]] == str(socket.parent)


def test_operator_points_runtimes_at_the_attestation_service(defaults: list[Manifest]) -> None:
    parser = build_parser()
    where_args = {w: a for w, a, _ in _kubetee_invocations(defaults)}
    operator: argparse.Namespace = parser.parse_args(
        next(a for w, a in where_args.items() if w.endswith("/operator"))
    )
    service = one(defaults, "Service", "kt-kubetee-attestation")
    port = service["spec"]["ports"][0]["port"]
    assert operator.attestation_url == f"https://kt-kubetee-attestation.kubetee-system.svc:{port}"
    assert operator.runtime_image == KUBETEE_IMAGE


def _pod_labels(manifests: list[Manifest]) -> list[dict[str, str]]:
    return [
        m["spec"]["template"]["metadata"]["labels"]
        for m in manifests
        if m["kind"] in {"Deployment", "DaemonSet"}
    ]


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_select_pods_and_name_their_ports(scenario: list[Manifest]) -> None:
    workloads = [m for m in scenario if m["kind"] in {"Deployment", "DaemonSet"}]
    for service in find(scenario, "Service"):
        selected = [
            w
            for w in workloads
            if _matches(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, service["metadata"]["name"]
        port_names = {
            p["name"]
            for c in selected[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, service["metadata"]["name"]


def test_workload_selectors_match_their_templates(scenario: list[Manifest]) -> None:
    for workload in scenario:
        if workload["kind"] in {"Deployment", "DaemonSet"}:
            selector = workload["spec"]["selector"]["matchLabels"]
            assert _matches(selector, workload["spec"]["template"]["metadata"]["labels"])


def test_probes_and_mounts_refer_to_what_the_pod_declares(scenario: list[Manifest]) -> None:
    for key, spec in pod_specs(scenario).items():
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for container in containers(spec):
            ports = {p.get("name") for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                action: dict[str, Any] = container.get(probe, {})
                handler = action.get("httpGet") or action.get("tcpSocket")
                if handler:
                    assert handler["port"] in ports, f"{key}: {probe}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{key}: mount {mount['name']}"


def test_pod_disruption_budget_keeps_an_attestation_replica(defaults: list[Manifest]) -> None:
    budget = one(defaults, "PodDisruptionBudget", "kt-kubetee-attestation")
    deployment = one(defaults, "Deployment", "kt-kubetee-attestation")
    assert deployment["spec"]["replicas"] == 2
    assert budget["spec"]["minAvailable"] == 1
    assert (
        budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )


def test_service_monitor_scrapes_every_metrics_port(render: Render) -> None:
    # Structural: the ServiceMonitor CRD (monitoring.coreos.com) is not available offline,
    # so the apiserver cannot check it; this checks what makes it scrape anything.
    manifests = render(set_values=("serviceMonitor.enabled=true",))
    monitor = one(manifests, "ServiceMonitor", "kt-kubetee")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kubetee-system"]}
    scraped = [s for s in find(manifests, "Service") if _matches(selector, s["metadata"]["labels"])]
    assert {s["metadata"]["name"] for s in scraped} == {
        "kt-kubetee-operator",
        "kt-kubetee-attestation",
        "kt-kubetee-node",
        "kt-kubetee-metrics-apiserver",
    }
    for service in find(manifests, "Service"):
        has_metrics = any(p["name"] == "metrics" for p in service["spec"]["ports"])
        assert (service in scraped) == has_metrics, service["metadata"]["name"]
        if has_metrics:
            assert endpoint_ports == {"metrics"}


@pytest.mark.parametrize("directory", ["/var/run/kubetee", "/run/kubetee/", "/run", "/"])
def test_a_quoting_socket_dir_over_the_replicas_secrets_is_refused(
    binaries: None, directory: str
) -> None:
    # Allocate mounts this directory into every replica; over /run/kubetee it would
    # cover the secrets volume and runc would refuse to start the replica.
    with pytest.raises(AssertionError, match=r"would be mounted over /run/kubetee"):
        template(set_values=(f"devicePlugin.quotingSocketDir={directory}",))


def test_the_charts_lease_is_the_one_the_scheduler_elects_its_leader_with(
    defaults: list[Manifest],
) -> None:
    # Made by the chart so that `helm uninstall` removes it with the release.
    (config_map,) = [
        cm for cm in find(defaults, "ConfigMap") if "config.yaml" in (cm.get("data") or {})
    ]
    election = yaml.safe_load(config_map["data"]["config.yaml"])["leaderElection"]
    (lease,) = find(defaults, "Lease")
    assert lease["metadata"]["name"] == election["resourceName"]
    assert lease["metadata"]["namespace"] == election["resourceNamespace"]
    assert lease["spec"] == {}


def test_the_attestation_expiry_policy_reaches_the_operator_and_readiness_means_able_to_attest(
    render: Render,
) -> None:
    everything = render(Path(__file__).parent / "scenarios" / "everything.yaml")
    for manifests, policy, overdue in (
        (render(), "FailClosed", "180"),
        (everything, "KeepServing", "240"),
    ):
        specs = pod_specs(manifests)
        operator = next(v for k, v in specs.items() if k.endswith("-operator"))["containers"][0]
        env = {e["name"]: e.get("value") for e in operator.get("env", [])}
        assert env["KUBETEE_ATTESTATION_EXPIRY"] == policy
        assert env["KUBETEE_REATTEST_OVERDUE_SECONDS"] == overdue
    service = next(v for k, v in specs.items() if k.endswith("-attestation"))["containers"][0]
    assert service["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert service["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_device_plugin_sees_the_quoting_socket_it_checks(defaults: list[Manifest]) -> None:
    """Without the socket's directory it would find no quoting service and mark every
    enclave slot unhealthy."""
    spec = pod_specs(defaults)[NODE_DAEMONSET]
    by_name = {c["name"]: c for c in containers(spec)}
    plugin = by_name["device-plugin"]
    socket = next(a.split("=", 1)[1] for a in plugin["args"] if a.startswith("--quoting-socket="))
    mounted = {m["mountPath"].rstrip("/") for m in plugin["volumeMounts"]}
    assert str(Path(socket).parent) in mounted


def _attestation_serve_args(manifests: list[Manifest]) -> argparse.Namespace:
    parser = build_parser()
    return next(
        parser.parse_args(args)
        for _, args, _ in _kubetee_invocations(manifests)
        if args[:2] == ["attestation-service", "serve"]
    )


def test_attestation_keepalive_and_connection_limit_reach_the_service(
    defaults: list[Manifest], render: Render
) -> None:
    default = _attestation_serve_args(defaults)
    assert (default.keepalive_timeout_seconds, default.max_connections) == ("15", "256")
    # Kept connections across the runtimes' 120 s rounds: a longer timeout, more connections.
    kept = _attestation_serve_args(
        render(
            set_values=(
                "attestationService.keepaliveTimeoutSeconds=180",
                "attestationService.maxConnections=2048",
            )
        )
    )
    assert (kept.keepalive_timeout_seconds, kept.max_connections) == ("180", "2048")


def test_attestation_workers_reach_the_service(defaults: list[Manifest], render: Render) -> None:
    assert _attestation_serve_args(defaults).workers == "1"
    # One per whole CPU of the container's limit: --workers=0, with a CPU limit set.
    per_cpu = render(
        set_values=(
            "attestationService.workers=0",
            "attestationService.resources.limits.cpu=2",
            "attestationService.resources.limits.memory=1Gi",
        )
    )
    assert _attestation_serve_args(per_cpu).workers == "0"


def test_attestation_workers_are_bounded_by_the_schema(render: Render) -> None:
    with pytest.raises(AssertionError, match=r"workers.*minimum"):
        render(set_values=("attestationService.workers=-1",))
    # A worker per CPU of the node, without a CPU limit, would outgrow the memory limit.
    with pytest.raises(AssertionError, match=r"set attestationService.resources.limits.cpu"):
        render(set_values=("attestationService.workers=0",))
