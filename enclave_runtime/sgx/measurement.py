"""MRENCLAVE as the CPU builds it: SHA-256 over ECREATE, EADD and EEXTEND records.

Intel SDM 39.1: ECREATE starts the hash with a 64-byte record (``"ECREATE\\0"``, SSA frame
size, enclave size); each EADD adds a 64-byte record (``"EADD\\0\\0\\0\\0"``, the page's
offset, the first 48 bytes of its SECINFO); each EEXTEND adds a 64-byte record
(``"EEXTEND\\0"``, the offset of a 256-byte chunk) followed by the chunk itself. EINIT
finalizes the hash. Pages that are added without EEXTEND (heap, SSA) count by offset and
permissions only, as their content is zero at launch.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

PAGE_SIZE: Final = 4096
CHUNK_SIZE: Final = 256
# SECINFO.FLAGS: permission bits and page type (bits 8..15).
PERM_R: Final = 0x1
PERM_W: Final = 0x2
PERM_X: Final = 0x4
PT_TCS: Final = 0x1
PT_REG: Final = 0x2

_ECREATE = struct.Struct("<8sIQ44x")
_EADD = struct.Struct("<8sQQ40x")
_EEXTEND = struct.Struct("<8sQ48x")


@dataclass(frozen=True, slots=True)
class Region:
    """Pages of the enclave: content (zero-padded to whole pages), or ``pages`` zero pages."""

    name: str
    flags: int
    content: bytes = b""
    pages: int = 0
    extend: bool = True

    @property
    def page_count(self) -> int:
        return max(self.pages, -(-len(self.content) // PAGE_SIZE))


def secinfo_flags(page_type: int, permissions: int) -> int:
    return (page_type << 8) | permissions


def enclave_size(regions: list[Region]) -> int:
    """ECREATE's SIZE: the smallest power of two holding every page (SDM: SECS.SIZE)."""
    needed = sum(r.page_count for r in regions) * PAGE_SIZE
    size = PAGE_SIZE
    while size < needed:
        size *= 2
    return size


def measure_regions(regions: list[Region], *, ssa_frame_size: int = 1) -> bytes:
    """MRENCLAVE of an enclave built from ``regions`` laid out in order from offset 0."""
    digest = hashlib.sha256()
    digest.update(_ECREATE.pack(b"ECREATE\0", ssa_frame_size, enclave_size(regions)))
    offset = 0
    for region in regions:
        padded = region.content.ljust(region.page_count * PAGE_SIZE, b"\0")
        for page in range(region.page_count):
            page_offset = offset + page * PAGE_SIZE
            digest.update(_EADD.pack(b"EADD\0\0\0\0", page_offset, region.flags))
            if not region.extend:
                continue
            base = page * PAGE_SIZE
            # One update per page (16 records and chunks): the hash is the same, and
            # Python's per-call cost no longer dominates (benchmarks/enclave_measure.py).
            digest.update(
                b"".join(
                    _EEXTEND.pack(b"EEXTEND\0", page_offset + chunk)
                    + padded[base + chunk : base + chunk + CHUNK_SIZE]
                    for chunk in range(0, PAGE_SIZE, CHUNK_SIZE)
                )
            )
        offset += region.page_count * PAGE_SIZE
    return digest.digest()
