"""Every RBAC rule the chart grants is used by its component, and every use is granted.

The permissions a component uses are derived from its code (see rbac_analysis); the
permissions the chart grants are the rules of the Roles and ClusterRoles bound to the
component's ServiceAccount in the rendered chart. The two must be equal. The second
scheduler is the real kube-scheduler: it gets the cluster's own roles for schedulers
(maintained with Kubernetes itself) plus its leader-election Lease, named in its config.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubetee.cli import SUBCOMMANDS
from tests.unit.chart.conftest import NAMESPACE, Manifest, Render, find
from tests.unit.chart.rbac_analysis import Permission, needed_permissions

# ServiceAccount component label -> the kubetee subcommands its pods run.
COMMANDS: dict[str, tuple[str, ...]] = {
    "operator": ("operator",),
    "attestation": ("attestation-service",),
    "node": ("device-plugin", "quoting-service"),
    "pcs": ("pcs",),
    "metrics-apiserver": ("metrics-apiserver",),
    "test": (),  # files/helm-test.py: API discovery only, allowed to every user
}
# Roles Kubernetes bootstraps, bound as its documentation says for a second scheduler.
BOOTSTRAP_ROLES: dict[str, set[str]] = {
    "scheduler": {
        "system:kube-scheduler",
        "system:volume-scheduler",
        "extension-apiserver-authentication-reader",
    },
}
# Code that the commands reach but that runs only on a developer's machine, never in the
# cluster: the local cluster tooling (`kubetee metrics-apiserver local` registers the
# server of a local cluster with the developer's credentials).
LOCAL_ONLY = ("kubetee.cluster", "kubetee.metrics.local")
LEASE_VERBS = ("get", "update")  # leader election; system:kube-scheduler grants create


def _component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"]["app.kubernetes.io/component"])


def _bound_roles(manifests: list[Manifest], account: str) -> list[tuple[str, str, str | None]]:
    """(kind, role name, binding namespace or None) bound to the ServiceAccount."""
    bound = []
    for binding in find(manifests, "ClusterRoleBinding") + find(manifests, "RoleBinding"):
        subjects = binding.get("subjects") or []
        if any(s["kind"] == "ServiceAccount" and s["name"] == account for s in subjects):
            ref = binding["roleRef"]
            bound.append((ref["kind"], ref["name"], binding["metadata"].get("namespace")))
    return bound


def granted(manifests: list[Manifest], account: str) -> dict[Permission, list[dict[str, Any]]]:
    """The permissions the chart's own roles give the account, with the granting rules."""
    permissions: dict[Permission, list[dict[str, Any]]] = {}
    for kind, name, _namespace in _bound_roles(manifests, account):
        roles = find(manifests, kind, name)
        for role in roles:
            for rule in role.get("rules", []):
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            permissions.setdefault(Permission(group, resource, verb), []).append(
                                rule
                            )
    return permissions


def needed(commands: tuple[str, ...]) -> set[Permission]:
    found: set[Permission] = set()
    for command in commands:
        found |= needed_permissions(SUBCOMMANDS[command], LOCAL_ONLY)
    return found


@pytest.fixture(scope="module")
def everything_on(render: Render) -> list[Manifest]:
    # Defaults enable every component and bind Secrets cluster-wide.
    return render()


def service_accounts(manifests: list[Manifest]) -> dict[str, str]:
    return {_component(sa): sa["metadata"]["name"] for sa in find(manifests, "ServiceAccount")}


def test_every_service_account_is_a_known_component(everything_on: list[Manifest]) -> None:
    assert set(service_accounts(everything_on)) == set(COMMANDS) | set(BOOTSTRAP_ROLES)


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_granted_equals_used(everything_on: list[Manifest], component: str) -> None:
    commands = COMMANDS[component]
    missing_commands = [c for c in commands if c not in SUBCOMMANDS]
    assert not missing_commands, f"kubetee has no subcommand {missing_commands}"
    account = service_accounts(everything_on)[component]
    grants = granted(everything_on, account)
    uses = needed(commands)
    unused = sorted(str(p) for p in grants if not any(p.covers(u) for u in uses))
    assert not unused, f"{component}: the chart grants permissions no code uses: {unused}"
    ungranted = sorted(str(u) for u in uses if not any(p.covers(u) for p in grants))
    assert not ungranted, f"{component}: the code needs permissions the chart lacks: {ungranted}"
    for kind, name, _ in _bound_roles(everything_on, account):
        assert find(everything_on, kind, name), f"{component} is bound to {kind} {name} " + (
            "that the chart does not define (only the scheduler may use bootstrap roles)"
        )


def test_rules_name_no_wildcards(everything_on: list[Manifest]) -> None:
    for role in find(everything_on, "ClusterRole") + find(everything_on, "Role"):
        for rule in role.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{role['metadata']['name']}: {key} has *"


def test_scheduler_gets_only_its_documented_roles_and_lease(everything_on: list[Manifest]) -> None:
    account = service_accounts(everything_on)["scheduler"]
    bound = _bound_roles(everything_on, account)
    bootstrap = {name for kind, name, _ in bound if not find(everything_on, kind, name)}
    assert bootstrap == BOOTSTRAP_ROLES["scheduler"]
    config_map = next(
        cm for cm in find(everything_on, "ConfigMap") if _component(cm) == "scheduler"
    )
    election = yaml.safe_load(config_map["data"]["config.yaml"])["leaderElection"]
    grants = granted(everything_on, account)
    assert set(grants) == {Permission("coordination.k8s.io", "leases", v) for v in LEASE_VERBS}
    for rules in grants.values():
        assert all(rule["resourceNames"] == [election["resourceName"]] for rule in rules)
    lease_roles = [
        (kind, namespace) for kind, name, namespace in bound if find(everything_on, kind, name)
    ]
    assert lease_roles == [("Role", election["resourceNamespace"])]


def test_lease_ledger_is_confined_to_the_release_namespace(everything_on: list[Manifest]) -> None:
    account = service_accounts(everything_on)["attestation"]
    for kind, name, namespace in _bound_roles(everything_on, account):
        rules = [r for role in find(everything_on, kind, name) for r in role["rules"]]
        if any("leases" in r["resources"] for r in rules):
            assert (kind, namespace) == ("Role", NAMESPACE)


def test_secret_access_follows_secret_namespaces(render: Render) -> None:
    confined = render(set_values=("attestationService.secretNamespaces={team-a,team-b}",))
    account = service_accounts(confined)["attestation"]
    secret_roles = {
        name
        for role in find(confined, "ClusterRole")
        for name in [role["metadata"]["name"]]
        if any("secrets" in rule["resources"] for rule in role["rules"])
    }
    bindings = [
        (kind, namespace)
        for kind, name, namespace in _bound_roles(confined, account)
        if name in secret_roles
    ]
    assert sorted(bindings) == [("ClusterRole", "team-a"), ("ClusterRole", "team-b")]
    role_bindings = find(confined, "RoleBinding")
    assert {
        b["metadata"]["namespace"] for b in role_bindings if b["roleRef"]["name"] in secret_roles
    } == {
        "team-a",
        "team-b",
    }
    assert not [
        b for b in find(confined, "ClusterRoleBinding") if b["roleRef"]["name"] in secret_roles
    ]


def test_node_daemonset_has_no_api_access(everything_on: list[Manifest]) -> None:
    account = service_accounts(everything_on)["node"]
    assert _bound_roles(everything_on, account) == []
    assert needed(COMMANDS["node"]) == set()
    daemonset = find(everything_on, "DaemonSet")[0]
    assert daemonset["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_analysis_sees_what_another_component_does() -> None:
    # The node agent (not in the chart: the kubelet's role on real nodes) patches Node
    # status; the analysis must find that in code it was not tuned on.
    found = needed_permissions(SUBCOMMANDS["node-agent"], LOCAL_ONLY)
    assert Permission("", "nodes/status", "patch") in found
