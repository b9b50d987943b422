"""``kubetee quote verify|simulate|inspect``: JSON on stdout, exit 0 / 1 / 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubetee.cli import main
from tests.unit.attestation.conftest import DEBUG_TIME, REAL_TIME


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out else {}


def test_verify_real_quote(capsys: pytest.CaptureFixture[str], dcap_dir: Path) -> None:
    code, result = _run(
        capsys,
        "quote",
        "verify",
        str(dcap_dir / "sgx_quote.bin"),
        "--collateral",
        str(dcap_dir / "sgx_quote_collateral.json"),
        "--now",
        str(REAL_TIME),
    )
    assert code == 0
    assert result == {
        "verified": True,
        "tcb_status": "ConfigurationAndSWHardeningNeeded",
        "advisory_ids": ["INTEL-SA-00289", "INTEL-SA-00615"],
        "mrenclave": "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
        "mrsigner": "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
        "isv_prod_id": 0,
        "isv_svn": 0,
        "debug": False,
        "report_data": b"Hello, world!".ljust(64, b"\0").hex(),
        "fmspc": "00A067110000",
        "tcb_evaluation_data_number": 17,
    }


def test_verify_expired_exits_1(capsys: pytest.CaptureFixture[str], dcap_dir: Path) -> None:
    code, result = _run(
        capsys,
        "quote",
        "verify",
        str(dcap_dir / "sgx_quote.bin"),
        "--collateral",
        str(dcap_dir / "sgx_quote_collateral.json"),
        "--now",
        "1752919279",
    )
    assert code == 1
    assert result["verified"] is False
    assert result["error"] == "COLLATERAL_EXPIRED"
    assert "expired" in str(result["message"])


def test_debug_quote_refused_unless_allowed(
    capsys: pytest.CaptureFixture[str], dcap_dir: Path
) -> None:
    argv = [
        "quote",
        "verify",
        str(dcap_dir / "sgx_debug_quote.bin"),
        "--collateral",
        str(dcap_dir / "sgx_debug_quote_collateral.json"),
        "--now",
        str(DEBUG_TIME),
    ]
    code, result = _run(capsys, *argv)
    assert (code, result["error"]) == (1, "DEBUG_ENCLAVE_REJECTED")
    code, result = _run(capsys, *argv, "--allow-debug")
    assert code == 0
    assert result["debug"] is True


def test_simulate_then_verify_with_its_root_in_pem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "sim"
    code, summary = _run(
        capsys,
        "quote",
        "simulate",
        "--out-dir",
        str(out),
        "--report-data",
        "c0ffee",
        "--tcb-status",
        "OutOfDate",
        "--debug",
    )
    assert code == 0
    assert {p.name for p in out.iterdir()} == {
        "quote.bin",
        "collateral.json",
        "root_ca.der",
        "now.txt",
    }
    root_pem = x509.load_der_x509_certificate((out / "root_ca.der").read_bytes()).public_bytes(
        serialization.Encoding.PEM
    )
    (tmp_path / "root.pem").write_bytes(root_pem)
    base = [
        "quote",
        "verify",
        str(out / "quote.bin"),
        "--collateral",
        str(out / "collateral.json"),
        "--now",
        (out / "now.txt").read_text().strip(),
    ]
    code, result = _run(capsys, *base, "--root-ca", str(tmp_path / "root.pem"), "--allow-debug")
    assert code == 0
    assert result["tcb_status"] == "OutOfDate"
    assert result["mrenclave"] == summary["mrenclave"]
    assert str(result["report_data"]).startswith("c0ffee00")
    code, result = _run(capsys, *base, "--allow-debug")
    assert (code, result["error"]) == (1, "ROOT_CA_MISMATCH")


def test_simulated_revoked_platform_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _run(capsys, "quote", "simulate", "--out-dir", str(tmp_path), "--tcb-status", "Revoked")
    code, result = _run(
        capsys,
        "quote",
        "verify",
        str(tmp_path / "quote.bin"),
        "--collateral",
        str(tmp_path / "collateral.json"),
        "--root-ca",
        str(tmp_path / "root_ca.der"),
        "--now",
        (tmp_path / "now.txt").read_text(),
    )
    assert (code, result["error"]) == (1, "TCB_REVOKED")


def test_inspect_prints_the_fields(capsys: pytest.CaptureFixture[str], dcap_dir: Path) -> None:
    code, result = _run(capsys, "quote", "inspect", str(dcap_dir / "sgx_quote.bin"))
    assert code == 0
    assert result["header"]["version"] == 3  # type: ignore[index]
    assert result["report_body"]["mrenclave"].startswith("33d8736d")  # type: ignore[index]
    chain = result["pck_certificates"]
    assert isinstance(chain, list)
    assert len(chain) == 3
    assert chain[0]["sgx_extension"]["fmspc"] == "00A067110000"
    assert "ppid" not in chain[0]["sgx_extension"]


def test_inspect_malformed_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "q").write_bytes(b"\x03\x00" * 10)
    code, result = _run(capsys, "quote", "inspect", str(tmp_path / "q"))
    assert (code, result["error"]) == (1, "QUOTE_TRUNCATED")


def test_garbage_collateral_is_a_refusal(
    capsys: pytest.CaptureFixture[str], dcap_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "c.json").write_text("{}")
    code, result = _run(
        capsys,
        "quote",
        "verify",
        str(dcap_dir / "sgx_quote.bin"),
        "--collateral",
        str(tmp_path / "c.json"),
    )
    assert (code, result["error"]) == (1, "COLLATERAL_MALFORMED")


@pytest.mark.parametrize(
    "argv",
    [
        ["quote", "verify", "/nonexistent/quote.bin", "--collateral", "/nonexistent/c.json"],
        ["quote", "inspect", "/nonexistent/quote.bin"],
        ["quote", "simulate", "--out-dir", "/tmp/x", "--report-data", "zz"],
        ["quote", "simulate", "--out-dir", "/tmp/x", "--report-data", "00" * 65],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("kubetee quote: ")


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["quote", "verify", "q.bin"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["quote", "simulate", "--out-dir", "x", "--tcb-status", "Great"])
    assert caught.value.code == 2


def test_bad_root_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], dcap_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "root").write_bytes(b"garbage")
    code = main(
        [
            "quote",
            "verify",
            str(dcap_dir / "sgx_quote.bin"),
            "--collateral",
            str(dcap_dir / "sgx_quote_collateral.json"),
            "--root-ca",
            str(tmp_path / "root"),
        ]
    )
    assert code == 2
    assert "not a DER or PEM certificate" in capsys.readouterr().err
