"""docs/kind.md stays true: every command's files, chart values, kubetee flags and names.

Each shell line of the walkthrough's ``sh`` blocks is parsed: files it names must exist,
``helm`` commands are rendered with the real helm (so every ``--set`` and ``-f`` value
must pass the chart's schema), ``kubetee`` commands must parse with the real CLI, and the
names it uses (image, cluster, Secret, labels, containers, annotations) must be the ones
the chart, the examples and the code use.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from kubetee.api.quantity import parse_mebibytes
from kubetee.cli import build_parser
from kubetee.cluster.toolchain import KUBERNETES_VERSION
from kubetee.controller.enclave_container import ENCLAVE_CONTAINER
from kubetee.controller.names import EC_LABEL, RUNTIME_CONTAINER
from kubetee.deviceplugin.constants import SGX_ENCLAVE_DEVICE, SGX_PROVISION_DEVICE
from kubetee.metrics.names import SIMULATED_USAGE_ANNOTATION
from tests.unit.chart.conftest import CHART, REPO_ROOT, helm_command
from tests.unit.chart.test_values import documented_values

WALKTHROUGH = REPO_ROOT / "docs" / "kind.md"
KIND_CONFIG = REPO_ROOT / "deploy" / "kind" / "kind-config.yaml"
EXAMPLES = REPO_ROOT / "deploy" / "examples"
REPO_PATH = re.compile(r"^(deploy|charts|crds|docs)/")
_BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)


README_SECTION = re.compile(r"^## Run it on kind\n(.*?)^## ", re.DOTALL | re.MULTILINE)


def walkthrough_texts() -> list[str]:
    """docs/kind.md and the README's short version of it."""
    section = README_SECTION.search((REPO_ROOT / "README.md").read_text())
    assert section, "README.md has a 'Run it on kind' section"
    return [WALKTHROUGH.read_text(), section.group(1)]


def commands() -> list[list[str]]:
    return [words for text in walkthrough_texts() for words in _commands_of(text)]


def _commands_of(text: str) -> list[list[str]]:
    lines = [
        line.strip()
        for block in _BLOCK.findall(text)
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    return [shlex.split(line) for line in lines]


def _named(*program: str) -> list[list[str]]:
    return [c for c in commands() if c[: len(program)] == list(program)]


def _option(words: list[str], *names: str) -> list[str]:
    """Values of ``--name value`` and ``--name=value`` options."""
    found = []
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                found.append(words[i + 1])
            elif word.startswith(f"{name}="):
                found.append(word.split("=", 1)[1])
    return found


def _chart_values() -> dict[str, object]:
    values: dict[str, object] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def _chart_image() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = _chart_values()["image"]
    assert isinstance(image, dict)
    return f"{image['repository']}:{chart['appVersion']}"


def test_walkthrough_has_the_steps_the_chart_needs() -> None:
    programs = {" ".join(c[:2]) for c in commands()}
    for step in (
        "kind create",
        "docker build",
        "kind load",
        "helm install",
        "helm test",
        "kubectl apply",
    ):
        assert step in programs, f"docs/kind.md lacks `{step}`"


def test_every_repository_file_it_names_exists() -> None:
    for words in commands():
        # kubectl names files only with -f; `deploy/demo` is a Deployment.
        names = _option(words, "-f") if words[0] == "kubectl" else words
        for word in names:
            candidate = word.split("=", 1)[-1]
            if REPO_PATH.match(candidate):
                assert (REPO_ROOT / candidate).exists(), f"{' '.join(words)}: no {candidate}"
    for link in re.findall(r"\]\(\.\./([^)#]+)\)", WALKTHROUGH.read_text()):
        assert (REPO_ROOT / link).exists(), f"docs/kind.md links to missing {link}"


@pytest.mark.parametrize(
    "words", _named("helm", "install") + _named("helm", "upgrade"), ids=" ".join
)
def test_helm_values_exist_and_render(binaries: None, words: list[str]) -> None:
    documented = {".".join(path) for path in documented_values()}
    for assignment in _option(words, "--set", "--set-string"):
        key = assignment.split("=", 1)[0]
        assert any(key == d or key.startswith(f"{d}.") for d in documented), (
            f"--set {key}: the chart has no such value"
        )
    for values_file in _option(words, "-f", "--values"):
        values = yaml.safe_load((REPO_ROOT / values_file).read_text())
        assert isinstance(values, dict)
    release, chart = words[2], words[3]
    assert (REPO_ROOT / chart).resolve() == CHART
    # Render with exactly the walkthrough's options: the schema rejects unknown values.
    options = [w for w in words[4:] if w not in {"--wait", "--atomic"}]
    result = subprocess.run(
        helm_command("template", release, chart, f"--kube-version={KUBERNETES_VERSION}", *options),
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "words",
    [c for c in commands() if Path(c[0]).name == "kubetee"],
    ids=lambda c: " ".join(c[:3]),
)
def test_kubetee_flags_exist(words: list[str]) -> None:
    try:
        build_parser().parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"kubetee rejects: {' '.join(words)}")


@pytest.mark.parametrize("text", [0, 1], ids=["docs/kind.md", "README.md"])
def test_image_cluster_and_secret_names_match(text: int) -> None:
    words = _commands_of(walkthrough_texts()[text])

    def named(*program: str) -> list[list[str]]:
        return [c for c in words if c[: len(program)] == list(program)]

    (build,) = named("docker", "build")
    assert _option(build, "-t", "--tag") == [_chart_image()]
    (load,) = named("kind", "load", "docker-image")
    assert load[3] == _chart_image()
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert _option(load, "--name") == [config["name"]]
    for delete in named("kind", "delete", "cluster"):
        assert _option(delete, "--name") == [config["name"]]
    (create,) = named("kind", "create", "cluster")
    assert _option(create, "--config") == ["deploy/kind/kind-config.yaml"]

    (install,) = named("helm", "install")
    namespace = _option(install, "--namespace", "-n")
    secrets = [c for c in words if c[:1] == ["kubectl"] and "secret" in c]
    (create_secret,) = secrets
    sgx = _chart_values()["sgx"]
    assert isinstance(sgx, dict)
    assert create_secret[create_secret.index("generic") + 1] == sgx["authoritySecret"]
    assert _option(create_secret, "-n", "--namespace") == namespace
    (init,) = [c for c in words if c[1:3] == ["pcs", "init"]]
    authority = _option(init, "--dir")
    assert authority == [_option(create_secret, "--from-file")[0].rstrip("/")]
    # The root certificate alone goes to the attestation service.
    (root_ca,) = [c for c in words if c[:1] == ["kubectl"] and "configmap" in c]
    assert root_ca[root_ca.index("configmap") + 1] == sgx["rootCAConfigMap"]
    assert _option(root_ca, "-n", "--namespace") == namespace
    assert _option(root_ca, "--from-file") == [f"root-ca.pem={authority[0]}/root_ca.pem"]


def test_names_of_the_example_workload_match_the_code() -> None:
    documents = [
        d for d in yaml.safe_load_all((EXAMPLES / "enclavecontainer.yaml").read_text()) if d
    ]
    example = next(d for d in documents if d["kind"] == "EnclaveContainer")
    name = example["metadata"]["name"]
    app_containers = {c["name"] for c in example["spec"]["template"]["spec"]["containers"]}
    for command in commands():
        # What follows `--` is the command run in the container (`ls -l`, ...).
        words = command[: command.index("--")] if "--" in command else command
        for selector in _option(words, "-l"):
            assert selector == f"{EC_LABEL}={name}"
        for container in _option(words, "-c"):
            assert container in app_containers | {RUNTIME_CONTAINER, ENCLAVE_CONTAINER}
        for word in words:
            if word.startswith("deploy/") and words[0] == "kubectl" and "-f" not in words:
                assert word == f"deploy/{name}"  # the operator names the Deployment after it
        if words[:2] == ["kubectl", "annotate"]:
            assert any(w.startswith(f"{SIMULATED_USAGE_ANNOTATION}=") for w in words)
        if words[:2] == ["kubectl", "patch"]:
            assert words[2:4] == ["ec", name]


def test_kind_workers_are_what_the_chart_and_plugin_expect() -> None:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    assert workers
    node_selector = _chart_values()["devicePlugin"]
    assert isinstance(node_selector, dict)
    for worker in workers:
        assert node_selector["nodeSelector"].items() <= worker["labels"].items()
        mounted = {m["containerPath"] for m in worker["extraMounts"]}
        assert {SGX_ENCLAVE_DEVICE, SGX_PROVISION_DEVICE} <= mounted


def test_kind_values_advertise_the_example_pools_epc() -> None:
    values = yaml.safe_load((REPO_ROOT / "deploy" / "kind" / "values.yaml").read_text())
    pool = yaml.safe_load((EXAMPLES / "epcpool.yaml").read_text())
    assert values["devicePlugin"]["epcMiB"] == parse_mebibytes(pool["spec"]["epcPerNode"])
    assert (
        values["image"]["repository"]
        + ":"
        + yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
        == _chart_image()
    )


def test_the_readmes_short_version_runs_the_walkthroughs_own_commands() -> None:
    # The README repeats commands of docs/kind.md; a flag added or dropped in one of them
    # alone (as --set operator.verbose=true once was) would make the two disagree.
    walkthrough, readme = ({tuple(c) for c in _commands_of(text)} for text in walkthrough_texts())
    differing = sorted(" ".join(c) for c in readme - walkthrough)
    assert not differing, f"README.md runs commands docs/kind.md does not: {differing}"


def test_the_authority_is_provisioned_outside_the_working_tree() -> None:
    # Its private keys must not land where git or a docker build context would take them.
    for words in commands():
        paths = _option(words, "--authority-dir") + _option(words, "--from-file")
        if words[:3] == [".venv/bin/kubetee", "pcs", "init"]:
            paths += _option(words, "--dir")
        for value in paths:
            path = value.split("=", 1)[-1]  # --from-file=KEY=PATH names its file after the key
            assert path.startswith(("$HOME/", "/", "~/")), value
    for ignore in (".gitignore", ".dockerignore"):
        assert "sgx-authority" in (REPO_ROOT / ignore).read_text(), ignore
