"""The commands docs/enclave.md teaches first work as written, on the example workload."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from kubetee.cli import main

REPO_ROOT = Path(__file__).resolve().parents[3]
DOC = REPO_ROOT / "docs" / "enclave.md"


def test_the_first_commands_of_docs_enclave_md(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    block = re.search(r"```sh\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert block is not None
    commands = [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]
    assert [c[:3] for c in commands] == [
        ["kubetee", "enclave", "keygen"],
        ["kubetee", "enclave", "init"],
        ["kubetee", "enclave", "build"],
        ["kubetee", "enclave", "measure"],
        ["kubetee", "enclave", "run"],
    ]
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO_ROOT / "deploy" / "examples" / "enclave-app" / "app", "web/app")
    # `run` serves until stopped (its checks and launch are tested in test_cli.py).
    for command in commands[:-1]:
        assert main(command[1:]) == 0, command
    identity = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert identity["sampleKey"] is False
    assert identity["isvProdId"] == 1
