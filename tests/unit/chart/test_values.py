"""values.yaml: every value described, typed by values.schema.json, and exercised.

A value is described by a ``# --`` comment right above it or above an object it belongs
to; the schema has exactly the values of values.yaml (no undocumented extras, no
untyped values); the scenarios (values files of the documented options) change every
value at least once, and each scenario renders.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart.conftest import CHART, Render, helm_command, scenario_files

VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_./-]+):(?: |$)")


@dataclass(frozen=True)
class ValueLine:
    path: tuple[str, ...]
    described: bool  # a `# --` comment block right above the key


def value_lines(text: str) -> list[ValueLine]:
    """Each key of a values file with its path, and whether a `# --` comment describes it."""
    found: list[ValueLine] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = _KEY.match(line)
        if not match:
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        described = bool(comment) and comment[0].startswith("# --")
        found.append(ValueLine(tuple(key for _, key in stack), described))
        comment = []
    return found


def documented_values() -> list[tuple[str, ...]]:
    """The values a user sets: keys described themselves, or the leaves under sections."""
    lines = value_lines(VALUES.read_text())
    described = {line.path for line in lines if line.described}
    return [
        line.path
        for line in lines
        if line.path in described
        and not any(line.path[:i] in described for i in range(1, len(line.path)))
    ]


def lookup(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            raise KeyError(".".join(path))
        document = document[key]
    return document


def test_every_value_is_described() -> None:
    lines = value_lines(VALUES.read_text())
    described = {line.path for line in lines if line.described}
    children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for line in lines:
        children.setdefault(line.path[:-1], []).append(line.path)

    def ok(path: tuple[str, ...]) -> bool:
        # Described itself, or a section whose values all are.
        return path in described or (
            bool(children.get(path)) and all(ok(child) for child in children[path])
        )

    undescribed = [".".join(p) for p in children[()] if not ok(p)]
    assert not undescribed, f"values without a `# --` comment: {undescribed}"


def test_the_parser_sees_every_key_of_values_yaml() -> None:
    # Guards the line parser above: it must find exactly what YAML finds.
    def paths(document: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
        found = set()
        if isinstance(document, dict):
            for key, value in document.items():
                found.add((*prefix, key))
                found |= paths(value, (*prefix, key))
        return found

    parsed = {line.path for line in value_lines(VALUES.read_text())}
    assert parsed == paths(yaml.safe_load(VALUES.read_text()))


def _schema_paths(
    schema: dict[str, Any], defs: dict[str, Any], prefix: tuple[str, ...] = ()
) -> set[tuple[str, ...]]:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    found = set()
    for key, sub in schema.get("properties", {}).items():
        found.add((*prefix, key))
        found |= _schema_paths(sub, defs, (*prefix, key))
    return found


def test_schema_types_exactly_the_documented_values() -> None:
    schema = json.loads(SCHEMA.read_text())
    typed = _schema_paths(schema, schema["$defs"])
    documented = set(documented_values())
    missing = sorted(".".join(p) for p in documented if p not in typed)
    assert not missing, f"values.schema.json does not type {missing}"
    # Everything the schema names below a documented value is part of that value's shape
    # (e.g. resources.requests); above it, only sections of values.yaml.
    sections = {p[:i] for p in documented for i in range(1, len(p))}
    extra = sorted(
        ".".join(p)
        for p in typed
        if p not in documented
        and p not in sections
        and not any(p[:i] in documented for i in range(1, len(p)))
    )
    assert not extra, f"values.schema.json types values that values.yaml lacks: {extra}"


def test_schema_closes_every_section() -> None:
    schema = json.loads(SCHEMA.read_text())

    def open_sections(node: dict[str, Any], where: str) -> list[str]:
        found = []
        if "properties" in node and node.get("additionalProperties") is not False:
            found.append(where or "<root>")
        for key, sub in node.get("properties", {}).items():
            found += open_sections(sub, f"{where}.{key}".lstrip("."))
        return found

    assert open_sections(schema, "") == [], "misspelled keys would pass unnoticed"


@pytest.mark.parametrize(
    ("assignment", "complaint"),
    [
        ("operator.metricPort=9090", "additional properties 'metricPort' not allowed"),
        ("attestationService.replicas=0", "minimum"),
        ("devicePlugin.tcbStatus=Fine", "value must be one of"),
        ("attestationService.trust.source=files", "/attestationService/trust/configMap"),
        ("image.digest=latest", "/image/digest"),
    ],
)
def test_schema_rejects_bad_values_with_the_path(
    binaries: None, assignment: str, complaint: str
) -> None:
    result = subprocess.run(
        helm_command("lint", str(CHART), "--set", assignment),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def test_scenarios_change_every_value() -> None:
    defaults = yaml.safe_load(VALUES.read_text())
    changed: set[tuple[str, ...]] = set()
    for path in scenario_files():
        scenario = yaml.safe_load(path.read_text()) or {}
        for value in documented_values():
            try:
                if lookup(scenario, value) != lookup(defaults, value):
                    changed.add(value)
            except KeyError:
                continue
    unchanged = sorted(".".join(p) for p in documented_values() if p not in changed)
    assert not unchanged, f"no scenario in tests/unit/chart/scenarios/ changes {unchanged}"


def test_scenarios_use_only_known_values() -> None:
    documented = set(documented_values())
    sections = {p[:i] for p in documented for i in range(1, len(p))}
    for path in scenario_files():
        scenario = yaml.safe_load(path.read_text()) or {}
        unknown = [
            ".".join(line.path)
            for line in value_lines(path.read_text())
            if line.path not in documented
            and line.path not in sections
            and not any(line.path[:i] in documented for i in range(1, len(line.path)))
        ]
        assert isinstance(scenario, dict)
        assert not unknown, f"{path.name} sets values the chart does not have: {unknown}"


@pytest.mark.parametrize("scenario", scenario_files(), ids=lambda p: Path(p).stem)
def test_scenario_renders(render: Render, scenario: Path) -> None:
    manifests = render(scenario)
    assert manifests, f"{scenario.name} renders nothing"
    for manifest in manifests:
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubetee"
