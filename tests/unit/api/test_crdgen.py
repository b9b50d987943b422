"""The committed CRDs are exactly what the models generate, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetee.api.crdgen import (
    ENCLAVE_CONTAINER,
    EPC_POOL,
    RESOURCES,
    CustomResource,
    custom_resource_definition,
    render,
)
from kubetee.api.quantity import AT_MOST_MESSAGE, POSITIVE_MESSAGE, WHOLE_MEBIBYTES_MESSAGE

CRDS = Path(__file__).resolve().parents[3] / "crds"


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
def test_committed_crd_equals_generator_output(resource: CustomResource) -> None:
    committed = (CRDS / f"{resource.name}.yaml").read_text(encoding="utf-8")
    assert committed == render(resource), "run: kubetee crds --write crds"


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += _walk(sub, f"{path}.{name}")
    if "items" in node:
        found += _walk(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{*}}")
    return found


def _root(resource: CustomResource) -> dict[str, Any]:
    crd = custom_resource_definition(resource)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
def test_schema_is_structural_and_described(resource: CustomResource) -> None:
    for path, node in _walk(_root(resource), resource.kind):
        if node.get("x-kubernetes-int-or-string"):
            # Quantities, as in a resource request: an integer or a string, nothing else.
            assert "type" not in node, path
            assert [o["type"] for o in node["anyOf"]] == ["integer", "string"], path
            assert node.get("description"), path
            continue
        assert "type" in node, path
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & node.keys(), path
        if not path.endswith((".metadata", ".apiVersion", ".kind")) or path.count(".") > 1:
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_enclavecontainer_has_scale_subresource_and_columns() -> None:
    version = custom_resource_definition(ENCLAVE_CONTAINER)["spec"]["versions"][0]
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    assert "status" in version["subresources"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert {"Ready", "Attested", "EPC", "Pool", "Age"} <= set(names)
    crd = custom_resource_definition(ENCLAVE_CONTAINER)
    assert crd["spec"]["names"]["shortNames"] == ["ec"]


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    status = _root(ENCLAVE_CONTAINER)["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_cel_rules_reach_the_schema() -> None:
    spec = _root(ENCLAVE_CONTAINER)["properties"]["spec"]
    messages = [
        rule["message"]
        for path, node in _walk(spec, "spec")
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert "secret names must be unique" in messages
    assert "must be a positive whole number of MiB, at most 1Ti, such as 64Mi" in messages
    assert any("exactly one of file or env" in m for m in messages)
    assert any("heapSize must fit in epc" in m for m in messages)


def test_defaults_made_by_factories_reach_the_schema() -> None:
    spec = _root(ENCLAVE_CONTAINER)["properties"]["spec"]["properties"]
    assert spec["enclave"]["default"] == {}
    policy = spec["attestation"]["properties"]["policy"]["properties"]
    assert policy["acceptedTcbStatuses"]["default"] == ["UpToDate", "SWHardeningNeeded"]


def test_epcpool_is_cluster_scoped_with_short_name() -> None:
    crd = custom_resource_definition(EPC_POOL)
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["epcp"]
    assert yaml.safe_load(render(EPC_POOL)) == crd


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
def test_each_quantity_is_checked_by_one_rule_naming_each_mistake(
    resource: CustomResource,
) -> None:
    """The apiserver runs every rule on every write (status patches too): a quantity is
    parsed by one rule, whose message expression still names the mistake made."""
    quantities = [
        (path, node)
        for path, node in _walk(_root(resource), resource.kind)
        if any("isQuantity(" in r["rule"] for r in node.get("x-kubernetes-validations", []))
        and "properties" not in node
    ]
    assert quantities, "no quantity field found"
    for path, node in quantities:
        rules = node["x-kubernetes-validations"]
        assert len(rules) == 1, path
        expression = rules[0]["messageExpression"]
        for mistake in (POSITIVE_MESSAGE, AT_MOST_MESSAGE, WHOLE_MEBIBYTES_MESSAGE):
            assert f"'{mistake}'" in expression, (path, mistake)
