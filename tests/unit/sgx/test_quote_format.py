"""The quote v3 wire format: exact round trips and a specific code for every defect."""

from __future__ import annotations

import struct

import pytest

from enclave_runtime.sgx.quote import (
    ISV_SIGNED_SIZE,
    Quote,
    QuoteFormatError,
    ReportBody,
    parse_quote,
)
from tests.unit.sgx.simulation import REPORT_DATA, simulated_world


@pytest.fixture(scope="module")
def quote_bytes() -> bytes:
    return simulated_world().quote()


def test_simulated_quote_round_trips_byte_for_byte(quote_bytes: bytes) -> None:
    quote = parse_quote(quote_bytes)
    assert quote.to_bytes() == quote_bytes
    assert quote.header.version == 3
    assert quote.header.attestation_key_type == 2
    assert quote.certification_data_type == 5
    assert quote.report_body.report_data == REPORT_DATA.ljust(64, b"\0")
    assert quote.certification_data.endswith(b"-----END CERTIFICATE-----\n\0")


def test_report_body_round_trips_and_is_384_bytes() -> None:
    body = ReportBody(mrenclave=b"\x01" * 32, isv_prod_id=3, isv_svn=9, config_svn=4)
    raw = body.to_bytes()
    assert len(raw) == 384
    assert raw[64:96] == b"\x01" * 32
    assert raw[256:262] == struct.pack("<HHH", 3, 9, 4)
    assert ReportBody.from_bytes(raw) == body


@pytest.mark.parametrize(("flags", "debug"), [(0x05, False), (0x07, True), (0x02, True)])
def test_debug_is_the_attribute_flag_bit_1(flags: int, debug: bool) -> None:
    assert ReportBody(attributes=bytes([flags]) + bytes(15)).debug is debug


def _code(data: bytes) -> str:
    with pytest.raises(QuoteFormatError) as caught:
        parse_quote(data)
    return caught.value.code


@pytest.mark.parametrize("keep", [0, 1, 47, 48, 435, 436, 1000])
def test_truncated_quote_is_refused(quote_bytes: bytes, keep: int) -> None:
    assert _code(quote_bytes[:keep]) == "QUOTE_TRUNCATED"


def test_quote_missing_its_last_byte_is_truncated(quote_bytes: bytes) -> None:
    assert _code(quote_bytes[:-1]) == "QUOTE_TRUNCATED"


@pytest.mark.parametrize("padding", [b"\0", b"\0" * 64, b"junk"])
def test_padded_quote_is_refused(quote_bytes: bytes, padding: bytes) -> None:
    assert _code(quote_bytes + padding) == "QUOTE_TRAILING_DATA"


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("offset", "value", "code"),
    [
        (0, struct.pack("<H", 4), "QUOTE_UNSUPPORTED_VERSION"),
        (2, struct.pack("<H", 3), "QUOTE_UNSUPPORTED_KEY_TYPE"),
        (4, struct.pack("<I", 0x81), "QUOTE_UNSUPPORTED_TEE_TYPE"),
    ],
)
def test_unsupported_header_fields_are_named(
    quote_bytes: bytes, offset: int, value: bytes, code: str
) -> None:
    assert _code(_patch(quote_bytes, offset, value)) == code


def _certification_type_offset(quote: Quote) -> int:
    return ISV_SIGNED_SIZE + 4 + 64 + 64 + 384 + 64 + 2 + len(quote.qe_auth_data)


def test_other_certification_data_types_are_refused(quote_bytes: bytes) -> None:
    offset = _certification_type_offset(parse_quote(quote_bytes))
    changed = _patch(quote_bytes, offset, struct.pack("<H", 3))
    assert _code(changed) == "QUOTE_UNSUPPORTED_CERTIFICATION_DATA"


def test_inner_lengths_must_add_up(quote_bytes: bytes) -> None:
    quote = parse_quote(quote_bytes)
    size_offset = _certification_type_offset(quote) + 2
    longer = _patch(quote_bytes, size_offset, struct.pack("<I", len(quote.certification_data) + 1))
    shorter = _patch(quote_bytes, size_offset, struct.pack("<I", len(quote.certification_data) - 1))
    assert _code(longer) == "QUOTE_LENGTH_MISMATCH"
    assert _code(shorter) == "QUOTE_LENGTH_MISMATCH"


def test_auth_data_size_beyond_the_signature_data_is_refused(quote_bytes: bytes) -> None:
    offset = ISV_SIGNED_SIZE + 4 + 64 + 64 + 384 + 64
    assert _code(_patch(quote_bytes, offset, b"\xff\xff")) == "QUOTE_LENGTH_MISMATCH"


def test_non_bytes_input_is_refused() -> None:
    assert _code("not bytes") == "QUOTE_NOT_BYTES"  # type: ignore[arg-type]


def test_serializing_a_wrong_sized_signature_is_refused(quote_bytes: bytes) -> None:
    quote = parse_quote(quote_bytes)
    broken = Quote(
        header=quote.header,
        report_body=quote.report_body,
        signature=b"short",
        attestation_key=quote.attestation_key,
        qe_report=quote.qe_report,
        qe_report_signature=quote.qe_report_signature,
        qe_auth_data=quote.qe_auth_data,
        certification_data=quote.certification_data,
    )
    with pytest.raises(QuoteFormatError) as caught:
        broken.to_bytes()
    assert caught.value.code == "QUOTE_FIELD_INVALID"
