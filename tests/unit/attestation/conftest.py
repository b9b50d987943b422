"""Fixtures: the real DCAP sample quotes and a simulated SGX world."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubetee.attestation.collateral import Collateral
from kubetee.attestation.roots import intel_sgx_root_ca_der
from tests.unit.sgx.simulation import SimulatedWorld, simulated_world

REAL_TIME = 1751000000
DEBUG_TIME = 1724962800


def dcap_testdata_dir() -> Path:
    """``tests/data/dcap`` (Intel's public sample quotes), or ``$KUBETEE_DCAP_TESTDATA``."""
    override = os.environ.get("KUBETEE_DCAP_TESTDATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "data" / "dcap"


@dataclass(frozen=True)
class RealSample:
    quote: bytes
    collateral: Collateral
    collateral_json: str
    now: int


@pytest.fixture(scope="session")
def dcap_dir() -> Path:
    directory = dcap_testdata_dir()
    if not (directory / "sgx_quote.bin").is_file():
        pytest.fail(f"real DCAP samples not found in {directory}; set KUBETEE_DCAP_TESTDATA")
    return directory


def _sample(directory: Path, name: str, now: int) -> RealSample:
    text = (directory / f"{name}_collateral.json").read_text()
    return RealSample(
        quote=(directory / f"{name}.bin").read_bytes(),
        collateral=Collateral.from_json(text),
        collateral_json=text,
        now=now,
    )


@pytest.fixture(scope="session")
def real(dcap_dir: Path) -> RealSample:
    return _sample(dcap_dir, "sgx_quote", REAL_TIME)


@pytest.fixture(scope="session")
def real_debug(dcap_dir: Path) -> RealSample:
    return _sample(dcap_dir, "sgx_debug_quote", DEBUG_TIME)


@pytest.fixture(scope="session")
def intel_root() -> bytes:
    return intel_sgx_root_ca_der()


@pytest.fixture(scope="session")
def world() -> SimulatedWorld:
    return simulated_world()
