"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

The models are the one source of truth: this module turns their JSON Schema into the
structural OpenAPI v3 schema the apiserver wants (``$ref`` inlined, no ``title``,
``Optional[X]`` as a non-required ``X``, ``extra="allow"`` as preserved unknown
fields) and adds what a CRD needs around it: names, printer columns, subresources.
A unit test keeps the committed YAML equal to the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from kubetee.api.v1alpha1 import (
    GROUP,
    VERSION,
    EnclaveContainerSpec,
    EnclaveContainerStatus,
    EPCPoolSpec,
    EPCPoolStatus,
)

Schema = dict[str, Any]

# JSON Schema keywords the apiserver's structural schema does not take.
_DROPPED_KEYWORDS = frozenset({"title", "additionalProperties", "$defs"})
# A field that takes an integer or a string, as resource quantities do.
_INT_OR_STRING = "x-kubernetes-int-or-string"


@dataclass(frozen=True)
class CustomResource:
    """Everything a CRD says besides the schema of spec and status."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    scope: str
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    printer_columns: list[dict[str, Any]]
    scale: dict[str, str] | None = None
    categories: list[str] = field(default_factory=lambda: ["kubetee"])

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _ready_column(condition: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
    }


ENCLAVE_CONTAINER = CustomResource(
    kind="EnclaveContainer",
    plural="enclavecontainers",
    singular="enclavecontainer",
    short_names=["ec"],
    scope="Namespaced",
    description="A replicated workload that runs inside Intel SGX enclaves: each replica "
    "requests EPC, is placed by its EPCPool's strategy, and is Ready only once its "
    "enclave passed attestation.",
    spec=EnclaveContainerSpec,
    status=EnclaveContainerStatus,
    printer_columns=[
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Attested", "type": "integer", "jsonPath": ".status.attestedReplicas"},
        {"name": "EPC", "type": "string", "jsonPath": ".spec.epc"},
        {"name": "Pool", "type": "string", "jsonPath": ".spec.poolRef.name"},
        # "8/9", and why not all are ready: Ready's reason names the blocking cause
        # (InsufficientEPC, PoolNotFound, EPCQuotaExceeded, ...).
        {"name": "Scheduled", "type": "string", "jsonPath": ".status.scheduled"},
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "Pinned",
            "type": "string",
            "priority": 1,
            "jsonPath": ".status.attestation.pinned",
        },
    ],
    scale={
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
)

EPC_POOL = CustomResource(
    kind="EPCPool",
    plural="epcpools",
    singular="epcpool",
    short_names=["epcp"],
    scope="Cluster",
    description="A group of SGX nodes selected by label, the EPC they advertise, and the "
    "strategy (BinPack or Spread) that places EnclaveContainer replicas on them.",
    spec=EPCPoolSpec,
    status=EPCPoolStatus,
    printer_columns=[
        {"name": "Strategy", "type": "string", "jsonPath": ".spec.strategy"},
        {"name": "Nodes", "type": "integer", "jsonPath": ".status.totals.nodes"},
        {"name": "Capacity", "type": "string", "jsonPath": ".status.totals.capacity"},
        {"name": "Allocated", "type": "string", "jsonPath": ".status.totals.allocated"},
        {"name": "Free", "type": "string", "jsonPath": ".status.totals.free"},
        _ready_column("Ready", "Ready"),
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
)

RESOURCES: tuple[CustomResource, ...] = (ENCLAVE_CONTAINER, EPC_POOL)


class SchemaError(ValueError):
    """A model whose JSON Schema has no structural equivalent."""


class _WithFactoryDefaults(GenerateJsonSchema):
    """JSON Schema that also shows the defaults made by ``default_factory``.

    The apiserver then applies them, so an omitted ``enclave`` becomes ``{}`` with its
    own fields defaulted, and CEL rules see the values the operator's models see.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel | dict):
            return {}
        if isinstance(value, list):
            return [item.model_dump() if isinstance(item, BaseModel) else item for item in value]
        return NoDefault


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural OpenAPI v3 schema of ``model`` (its validation-mode JSON Schema)."""
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults
    )
    definitions: dict[str, Schema] = raw.get("$defs", {})
    return _convert(raw, definitions, path=model.__name__)


def _resolve(node: Schema, definitions: dict[str, Schema]) -> Schema:
    """Inline a ``$ref``, keeping the referring node's own keywords (its description)."""
    if "$ref" not in node:
        return node
    target = definitions[node["$ref"].removeprefix("#/$defs/")]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return _resolve(merged, definitions)


def _without_null(node: Schema) -> Schema:
    """``X | None`` is a JSON ``anyOf``; in a CRD it is an optional ``X``."""
    options = node.get("anyOf")
    if options is None or node.get(_INT_OR_STRING):
        return node
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) != 1:
        raise SchemaError(f"union {options} has no structural form")
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    return {**kept[0], **outer}


def _described(node: Schema, fallback: str, definitions: dict[str, Schema]) -> Schema:
    """``node`` with a description: its own (a model's docstring) or ``fallback``."""
    node = _resolve(_without_null(_resolve(node, definitions)), definitions)
    return node if "description" in node else {**node, "description": fallback}


def _keywords(node: Schema) -> Schema:
    """The node's own keywords (not its children), type and description first."""
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    if node.get(_INT_OR_STRING):
        # No type: the apiserver takes an integer or a string (its anyOf says which).
        kept = _without_keys(node, {"description"})
        if kept.get("default", "") is None:
            del kept["default"]
        return {"description": node["description"], **kept}
    out: Schema = {"type": node["type"], "description": node["description"]}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS or key in {"properties", "items", "required", *out}:
            continue
        if key == "default" and value is None:
            continue
        # Nested objects default to {} and take their own fields' defaults from there.
        out[key] = {} if key == "default" and isinstance(value, dict) else value
    return out


def _without_keys(node: Schema, keys: set[str]) -> Schema:
    return {k: v for k, v in node.items() if k not in keys and k not in _DROPPED_KEYWORDS}


def _convert(node: Schema, definitions: dict[str, Schema], path: str) -> Schema:
    node = _resolve(_without_null(_resolve(node, definitions)), definitions)
    if node.get(_INT_OR_STRING):
        if "description" not in node:
            raise SchemaError(f"{path}: no description (kubectl explain would show nothing)")
        return _keywords(node)
    if "type" not in node and "const" not in node:
        raise SchemaError(f"{path}: no type in {node}")
    if "description" not in node:
        raise SchemaError(f"{path}: no description (kubectl explain would show nothing)")
    out = _keywords(node)
    if out["type"] == "object":
        out.update(_object_children(node, definitions, path))
    if out["type"] == "array":
        out["items"] = _convert(
            _described(node["items"], node["description"], definitions), definitions, f"{path}[*]"
        )
    return out


def _object_children(node: Schema, definitions: dict[str, Schema], path: str) -> Schema:
    out: Schema = {}
    properties = node.get("properties", {})
    if properties:
        out["properties"] = {
            name: _convert(sub, definitions, f"{path}.{name}") for name, sub in properties.items()
        }
    if node.get("required"):
        out["required"] = list(node["required"])
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = _convert(
            _described(additional, "A value.", definitions), definitions, f"{path}{{*}}"
        )
    elif additional is True or (additional is None and not properties):
        # extra="allow" (a Kubernetes PodSpec, say): kept as given, checked by its consumer.
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def custom_resource_definition(resource: CustomResource) -> Schema:
    """The CustomResourceDefinition of ``resource``."""
    spec_schema = structural_schema(resource.spec)
    status_schema = structural_schema(resource.status)
    subresources: Schema = {"status": {}}
    if resource.scale is not None:
        subresources["scale"] = dict(resource.scale)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.name,
            "labels": {"app.kubernetes.io/part-of": "kubetee"},
        },
        "spec": {
            "group": GROUP,
            "scope": resource.scope,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": list(resource.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": resource.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {
                                    "type": "string",
                                    "description": f"API version of the object: {GROUP}/{VERSION}.",
                                },
                                "kind": {
                                    "type": "string",
                                    "description": f"Kind of the object: {resource.kind}.",
                                },
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                    "subresources": subresources,
                    "additionalPrinterColumns": list(resource.printer_columns),
                }
            ],
        },
    }


def render(resource: CustomResource) -> str:
    """The YAML text of ``resource``'s CRD, as committed in ``crds/``."""
    header = (
        f"# {resource.name}: generated by `kubetee crds --write` from the pydantic models in\n"
        "# operator/kubetee/api/; do not edit by hand.\n"
    )
    body = yaml.safe_dump(
        custom_resource_definition(resource), sort_keys=False, width=100, allow_unicode=True
    )
    return header + body


def write_all(directory: Path) -> list[Path]:
    """Write every CRD into ``directory`` as ``<plural>.<group>.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for resource in RESOURCES:
        path = directory / f"{resource.name}.yaml"
        path.write_text(render(resource), encoding="utf-8")
        written.append(path)
    return written
