"""The SGX extension of PCK certificates: Intel's real DER and malformed variants."""

from __future__ import annotations

import pytest

from enclave_runtime.sgx.pck_extension import PckExtensionError, SgxExtension

# The SGX extension of the PCK certificate in the real sample quote.
REAL = bytes.fromhex(
    "308201c1301e060a2a864886f84d010d01010410d04ec06d4e6d92dc90d0ad3cf5ee2ddf30820164060a2a86"
    "4886f84d010d0102308201543010060b2a864886f84d010d01020102010b3010060b2a864886f84d010d0102"
    "0202010b3010060b2a864886f84d010d0102030201023010060b2a864886f84d010d0102040201023011060b"
    "2a864886f84d010d010205020200ff3010060b2a864886f84d010d0102060201013010060b2a864886f84d01"
    "0d0102070201003010060b2a864886f84d010d0102080201003010060b2a864886f84d010d01020902010030"
    "10060b2a864886f84d010d01020a0201003010060b2a864886f84d010d01020b0201003010060b2a864886f8"
    "4d010d01020c0201003010060b2a864886f84d010d01020d0201003010060b2a864886f84d010d01020e0201"
    "003010060b2a864886f84d010d01020f0201003010060b2a864886f84d010d0102100201003010060b2a8648"
    "86f84d010d01021102010d301f060b2a864886f84d010d01021204100b0b0202ff0100000000000000000000"
    "3010060a2a864886f84d010d0103040200003014060a2a864886f84d010d0104040600a067110000300f060a"
    "2a864886f84d010d01050a0100"
)


def test_real_extension_decodes_and_reencodes_identically() -> None:
    extension = SgxExtension.from_der(REAL)
    assert extension.fmspc == bytes.fromhex("00a067110000")
    assert extension.pce_id == b"\0\0"
    assert extension.tcb_components == (11, 11, 2, 2, 255, 1) + (0,) * 10
    assert extension.pcesvn == 13
    assert extension.cpusvn == bytes.fromhex("0b0b0202ff0100000000000000000000")
    assert extension.sgx_type == 0
    assert extension.to_der() == REAL


def test_missing_entry_is_named() -> None:
    extension = SgxExtension.from_der(REAL)
    # Drop FMSPC by re-encoding without it: build, then cut the FMSPC entry out.
    fmspc_entry = bytes.fromhex("3014060a2a864886f84d010d0104040600a067110000")
    body = REAL[4:].replace(fmspc_entry, b"")
    shortened = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    with pytest.raises(PckExtensionError, match=r"lacks 1\.2\.840\.113741\.1\.13\.1\.4"):
        SgxExtension.from_der(shortened)
    assert extension.fmspc  # the original stays intact


@pytest.mark.parametrize("data", [b"", b"\x30", REAL[:-1], REAL + b"\0", b"\x04\x02ab"])
def test_malformed_der_is_refused(data: bytes) -> None:
    with pytest.raises(PckExtensionError):
        SgxExtension.from_der(data)


def test_wrong_sized_fmspc_is_refused() -> None:
    extension = SgxExtension.from_der(REAL)
    bad = SgxExtension(
        ppid=extension.ppid,
        tcb_components=extension.tcb_components,
        pcesvn=extension.pcesvn,
        cpusvn=extension.cpusvn,
        pce_id=extension.pce_id,
        fmspc=b"\x00" * 5,
    ).to_der()
    with pytest.raises(PckExtensionError, match="expected 6 bytes"):
        SgxExtension.from_der(bad)
