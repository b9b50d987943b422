from __future__ import annotations

import pytest

from enclave_runtime.sgx.enclave import EnclaveSigner


@pytest.fixture(scope="session")
def author() -> EnclaveSigner:
    return EnclaveSigner.generate()


@pytest.fixture(scope="session")
def other_author() -> EnclaveSigner:
    return EnclaveSigner.generate()
