"""The enclave's layout, page by page, and its MRENCLAVE.

From offset 0, as a LibOS enclave is laid out:

1. the manifest (canonical JSON, RFC 8785), read-only pages, EADD+EEXTEND: it holds
   every trusted file's SHA-256, so a changed byte in any trusted file changes MRENCLAVE
   (Gramine measures trusted files the same way, through the manifest);
2. the entrypoint program, read+execute pages, EADD+EEXTEND: its bytes themselves;
3. the heap, ``heapMiB`` of read+write pages, EADD only (zero at launch);
4. per thread, a TCS page (EADD+EEXTEND) and an SSA page (EADD only).
"""

from __future__ import annotations

import struct
from typing import Any, cast

import rfc8785

from enclave_runtime.enclave.manifest import EnclaveManifest
from enclave_runtime.sgx.measurement import (
    PAGE_SIZE,
    PERM_R,
    PERM_W,
    PERM_X,
    PT_REG,
    PT_TCS,
    Region,
    measure_regions,
    secinfo_flags,
)

MIB = 1024 * 1024


def layout(manifest: EnclaveManifest, entrypoint: bytes) -> list[Region]:
    """The enclave's regions for ``manifest`` whose entrypoint file holds ``entrypoint``."""
    regions = [
        Region(
            "manifest",
            secinfo_flags(PT_REG, PERM_R),
            content=rfc8785.dumps(cast(dict[str, Any], manifest.measured_json())),
        ),
        Region("entrypoint", secinfo_flags(PT_REG, PERM_R | PERM_X), content=entrypoint),
        Region(
            "heap",
            secinfo_flags(PT_REG, PERM_R | PERM_W),
            pages=manifest.heap_mi_b * MIB // PAGE_SIZE,
            extend=False,
        ),
    ]
    for thread in range(manifest.threads):
        # A TCS names its SSA frame (OSSA) and entry point (OENTRY): fixed here.
        tcs = struct.pack("<QQQQQ", 0, 0, PAGE_SIZE, 1, 0)
        regions.append(Region(f"tcs{thread}", secinfo_flags(PT_TCS, 0), content=tcs))
        regions.append(
            Region(f"ssa{thread}", secinfo_flags(PT_REG, PERM_R | PERM_W), pages=1, extend=False)
        )
    return regions


def mrenclave_of(manifest: EnclaveManifest, entrypoint: bytes) -> bytes:
    """MRENCLAVE of the enclave ``manifest`` describes (entrypoint bytes given)."""
    return measure_regions(layout(manifest, entrypoint))
