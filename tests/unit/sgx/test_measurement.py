"""MRENCLAVE from ECREATE/EADD/EEXTEND records, checked against the SDM's record formats."""

from __future__ import annotations

import hashlib
import struct

from enclave_runtime.sgx.measurement import (
    PERM_R,
    PERM_W,
    PERM_X,
    PT_REG,
    Region,
    enclave_size,
    measure_regions,
    secinfo_flags,
)


def test_one_page_enclave_matches_the_records_written_out_by_hand() -> None:
    content = bytes(range(256)) * 3  # 768 bytes: one page, zero-padded
    flags = secinfo_flags(PT_REG, PERM_R | PERM_X)
    expected = hashlib.sha256()
    # ECREATE: "ECREATE\0", SSAFRAMESIZE (u32), SIZE (u64), 44 zero bytes.
    expected.update(b"ECREATE\0" + struct.pack("<I", 1) + struct.pack("<Q", 4096) + bytes(44))
    # EADD: "EADD" + 4 zeros, offset (u64), SECINFO's first 48 bytes (FLAGS then zeros).
    expected.update(b"EADD\0\0\0\0" + struct.pack("<Q", 0) + struct.pack("<Q", flags) + bytes(40))
    page = content.ljust(4096, b"\0")
    for chunk in range(0, 4096, 256):
        expected.update(b"EEXTEND\0" + struct.pack("<Q", chunk) + bytes(48))
        expected.update(page[chunk : chunk + 256])
    assert measure_regions([Region("code", flags, content=content)]) == expected.digest()
    assert flags == 0x205


def test_unextended_pages_count_by_offset_and_permissions_only() -> None:
    heap = Region("heap", secinfo_flags(PT_REG, PERM_R | PERM_W), pages=2, extend=False)
    expected = hashlib.sha256()
    expected.update(b"ECREATE\0" + struct.pack("<IQ", 1, 8192) + bytes(44))
    for offset in (0, 4096):
        expected.update(b"EADD\0\0\0\0" + struct.pack("<QQ", offset, heap.flags) + bytes(40))
    assert measure_regions([heap]) == expected.digest()


def test_size_is_a_power_of_two_and_every_input_matters() -> None:
    code = Region("code", secinfo_flags(PT_REG, PERM_R | PERM_X), content=b"x" * 5000)
    heap = Region("heap", secinfo_flags(PT_REG, PERM_R | PERM_W), pages=3, extend=False)
    assert enclave_size([code, heap]) == 32768
    base = measure_regions([code, heap])
    assert measure_regions([code, heap]) == base
    changed_byte = Region(code.name, code.flags, content=b"x" * 4999 + b"y")
    assert measure_regions([changed_byte, heap]) != base
    bigger_heap = Region(heap.name, heap.flags, pages=4, extend=False)
    assert measure_regions([code, bigger_heap]) != base
    writable = Region(code.name, secinfo_flags(PT_REG, PERM_R | PERM_W), content=code.content)
    assert measure_regions([writable, heap]) != base
    assert measure_regions([heap, code]) != base
