"""The Grafana dashboard and the prometheus-adapter rules the chart ships.

PromQL is parsed by Prometheus's own parser (``promqlcheck/``, built once with the Go
toolchain the project already needs for the local cluster); every metric a query
selects must be one the components export (:mod:`kubetee.metrics.names`).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetee.cluster.toolchain import cache_dir, find_go
from kubetee.metrics import names
from kubetee.metrics.apiserver.provider import METRICS

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "charts" / "kubetee" / "dashboards" / "kubetee.json"
ADAPTER_RULES = REPO / "charts" / "kubetee" / "files" / "prometheus-adapter-rules.yaml"
CHECKER = Path(__file__).parent / "promqlcheck"

Parse = Callable[[list[str]], list[set[str]]]


@pytest.fixture(scope="session")
def parse_promql() -> Parse:
    """Parse expressions with Prometheus's parser; the metric names each one selects."""
    sources = b"".join((CHECKER / f).read_bytes() for f in ("main.go", "go.mod", "go.sum"))
    binary = cache_dir() / f"promqlcheck-{hashlib.sha256(sources).hexdigest()[:12]}"
    if not binary.exists():
        subprocess.run(
            [find_go(), "build", "-o", str(binary), "."],
            cwd=CHECKER,
            check=True,
            capture_output=True,
            timeout=600,
        )

    def parse(expressions: list[str]) -> list[set[str]]:
        result = subprocess.run(
            [str(binary)],
            input="\n".join(expressions) + "\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        lines = result.stdout.splitlines()
        errors = [(e, line) for e, line in zip(expressions, lines, strict=True) if "ERROR" in line]
        assert not errors, f"PromQL that does not parse: {errors}"
        return [set(line.split()) for line in lines]

    return parse


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query, Grafana's range variable made concrete."""
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", "5m"))
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def test_every_dashboard_query_parses_and_uses_exported_metrics(parse_promql: Parse) -> None:
    dashboard = _dashboard()
    queries = _queries(dashboard)
    variables = [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    label_values = [re.fullmatch(r"label_values\((.+), \w+\)", q) for q in variables]
    assert all(label_values), variables

    selected = parse_promql([expr for _, expr in queries] + [m[1] for m in label_values if m])

    used = set().union(*selected)
    assert used <= names.series_names(), used - names.series_names()
    assert all(selected), "every query selects at least one metric"


def test_dashboard_shows_epc_per_node_and_pool_and_attestation_results_and_latency() -> None:
    queries = [expr for _, expr in _queries(_dashboard())]

    def shown(metric: str, grouped_by: str) -> bool:
        return any(metric in q and f"by ({grouped_by}" in q for q in queries)

    for metric in (names.EPC_ALLOCATED_BYTES, names.EPC_ALLOCATABLE_BYTES):
        assert shown(metric, "pool")
        assert shown(metric, "node")
    assert shown(names.EPC_CAPACITY_BYTES, "pool")
    assert shown(names.ATTESTATIONS_TOTAL, "result, reason")
    assert any(
        "histogram_quantile(0.99" in q and names.ATTESTATION_DURATION_SECONDS + "_bucket" in q
        for q in queries
    )
    assert any(names.ENCLAVE_EPC_USED_BYTES in q for q in queries)


def test_dashboard_structure_is_what_grafana_imports() -> None:
    dashboard = _dashboard()
    panels = dashboard["panels"]
    defined = {v["name"] for v in dashboard["templating"]["list"]}

    assert dashboard["uid"] == "kubetee-epc"
    assert dashboard["schemaVersion"] >= 36
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs)
    text = DASHBOARD.read_text()
    used = set(re.findall(r"\$\{?(\w+)", text)) - {"__rate_interval", "__all"}
    assert used <= defined, used - defined


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(ADAPTER_RULES.read_text())["rules"]
    return rules


def test_adapter_rules_offer_the_metrics_the_kubetee_server_offers() -> None:
    offered = set()
    for rule in _rules():
        overrides = rule["resources"]["overrides"]
        for label, target in overrides.items():
            if label == "namespace":
                continue  # the namespace the objects are in
            resource = target["resource"] + ("" if target["resource"].endswith("s") else "s")
            if target.get("group"):
                resource = f"{resource}.{target['group']}"
            offered.add((resource, rule["name"]["as"]))

    assert offered == {(m.resource, m.metric) for m in METRICS}


def test_adapter_queries_parse_for_the_series_they_match(parse_promql: Parse) -> None:
    expressions = []
    for rule in _rules():
        series = rule["name"]["matches"].strip("^$")
        expressions.append(rule["seriesQuery"])
        for group_by in ("pod", "enclavecontainer"):
            expressions.append(
                rule["metricsQuery"]
                .replace("<<.Series>>", series)
                .replace("<<.LabelMatchers>>", f'namespace="shop",{group_by}=~"a|b"')
                .replace("<<.GroupBy>>", group_by)
            )

    selected = parse_promql(expressions)

    assert set().union(*selected) <= names.ALL_METRICS
    assert {names.ENCLAVE_EPC_SIZE_BYTES, names.EC_EPC_REQUESTED_BYTES} <= set().union(*selected)
