"""EPC quantities: parsed once into whole MiB, refused with a message naming the value."""

from __future__ import annotations

import pytest

from kubetee.api.quantity import QuantityError, format_mebibytes, parse_mebibytes


@pytest.mark.parametrize(
    ("text", "mebibytes"),
    [
        ("64Mi", 64),
        ("1Gi", 1024),
        ("65536Ki", 64),
        ("134217728", 128),
        (" 2Gi ", 2048),
        ("1Ti", 1 << 20),
    ],
)
def test_parses_quantities_into_mebibytes(text: str, mebibytes: int) -> None:
    assert parse_mebibytes(text) == mebibytes


def test_bare_integer_counts_mebibytes() -> None:
    assert parse_mebibytes(64) == 64


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("-64Mi", "more than zero"),
        ("0", "more than zero"),
        ("1500Ki", "whole number of MiB"),
        ("1M", "whole number of MiB"),
        ("128", "whole number of MiB"),  # a bare string quantity counts bytes
        ("64MB", "not a quantity"),
        ("lots", "not a quantity"),
        ("2Ti", "bound"),
    ],
)
def test_refuses_bad_values_naming_them(text: str, words: str) -> None:
    with pytest.raises(QuantityError, match=words) as caught:
        parse_mebibytes(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("mebibytes", "text"), [(64, "64Mi"), (1024, "1Gi"), (1536, "1536Mi"), (0, "0Mi")]
)
def test_formats_the_shortest_exact_quantity(mebibytes: int, text: str) -> None:
    assert format_mebibytes(mebibytes) == text
    if mebibytes:
        assert parse_mebibytes(text) == mebibytes
