"""The probes run `kubetee runtime probe` as a new process every few seconds on every
replica: it must load the standard library only, never the runtime's or the operator's
dependencies (on a busy node their import alone outlasted the probe's timeout)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from enclave_runtime.runtime.marker import started_marker

HEAVY = ("aiohttp", "pydantic", "cryptography", "kubernetes", "kubernetes_asyncio", "kopf")
SCRIPT = """
import json, sys
from kubetee.cli import main
code = main(["runtime", "probe", "--attested", "--state-dir", sys.argv[1]])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _probe(state_dir: Path) -> tuple[int, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(state_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    return result["code"], {name.split(".")[0] for name in result["modules"]}


@pytest.mark.parametrize("attested", [False, True])
def test_probe_answers_without_heavy_imports(tmp_path: Path, *, attested: bool) -> None:
    if attested:
        started_marker(tmp_path).write_text('{"mrenclave": "ab"}\n')
    code, modules = _probe(tmp_path)
    assert code == (0 if attested else 1)
    assert modules.isdisjoint(HEAVY), sorted(modules & set(HEAVY))
