"""The chart's CRDs are the repository's crds/ (one source), gated and kept on uninstall."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.unit.chart.conftest import CHART, REPO_ROOT, Manifest, Render, find

CRDS = REPO_ROOT / "crds"
CHART_CRDS = CHART / "files" / "crds"
REFRESH = "refresh the copy: kubetee crds --write charts/kubetee/files/crds"


def _load(path: Path) -> Manifest:
    document: Manifest = yaml.safe_load(path.read_text())
    return document


def test_chart_copy_is_byte_equal_to_crds_dir() -> None:
    ours = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    copy = {p.name: p.read_text() for p in CHART_CRDS.glob("*.yaml")}
    assert ours, "crds/ is empty"
    assert copy == ours, REFRESH


def test_rendered_crds_equal_the_source_but_for_helm_metadata(defaults: list[Manifest]) -> None:
    rendered = {crd["metadata"]["name"]: crd for crd in find(defaults, "CustomResourceDefinition")}
    sources = {_load(p)["metadata"]["name"]: _load(p) for p in CRDS.glob("*.yaml")}
    assert set(rendered) == set(sources)
    for name, source in sources.items():
        crd = rendered[name]
        assert crd["spec"] == source["spec"], f"{name}: the template changed the spec"
        for key, value in source["metadata"].get("labels", {}).items():
            assert crd["metadata"]["labels"][key] == value
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_crds_are_gated_and_keep_is_optional(render: Render) -> None:
    assert not find(render(set_values=("crds.enabled=false",)), "CustomResourceDefinition")
    unkept = find(render(set_values=("crds.keep=false",)), "CustomResourceDefinition")
    assert unkept
    assert all(
        "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})
        for crd in unkept
    )
