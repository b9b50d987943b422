"""Kubernetes quantities for EPC sizes, counted in MiB.

The device plugin advertises ``kubetee.io/epc`` in units of one MiB, so every EPC
size in the API (``64Mi``, ``1Gi``, ``65536Ki``) is converted to a whole number of
MiB here, once. Anything that is not a positive whole number of MiB is refused
with a message naming the value and the accepted forms.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

MIB = 1024 * 1024

# Binary and decimal suffixes as Kubernetes accepts them (resource.Quantity).
_SUFFIXES: dict[str, int] = {
    "": 1,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}
_QUANTITY = re.compile(r"^(?P<number>[+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(?P<suffix>[a-zA-Z]*)$")

# Sanity bound for one enclave and for one node: well above any SGX2 part's EPC
# (512 GiB per socket on current Xeons), low enough to catch a unit mistake.
MAX_EPC_MIB = 1024 * 1024


class QuantityError(ValueError):
    """A value that is not a whole, positive number of MiB."""


def parse_bytes(value: str) -> Decimal:
    """Return the number of bytes a Kubernetes quantity such as ``64Mi`` stands for."""
    match = _QUANTITY.match(value.strip())
    if match is None or match["suffix"] not in _SUFFIXES:
        raise QuantityError(
            f"{value!r} is not a quantity: use a number with a suffix such as 64Mi or 1Gi"
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as error:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{value!r} is not a quantity") from error
    return number * _SUFFIXES[match["suffix"]]


def parse_mebibytes(value: str | int) -> int:
    """Return the whole, positive number of MiB in ``value`` (``"64Mi"`` -> 64).

    A bare integer counts MiB, as the ``kubetee.io/epc`` resource does.
    """
    mebibytes = Decimal(value) if isinstance(value, int) else parse_bytes(value) / MIB
    if mebibytes <= 0:
        raise QuantityError(f"{value!r} must be more than zero, such as 64Mi")
    if mebibytes != mebibytes.to_integral_value():
        raise QuantityError(f"{value!r} is not a whole number of MiB: EPC is counted in MiB")
    if mebibytes > MAX_EPC_MIB:
        raise QuantityError(f"{value!r} is more than the bound of {format_mebibytes(MAX_EPC_MIB)}")
    return int(mebibytes)


def format_mebibytes(mebibytes: int) -> str:
    """Format a MiB count as the shortest exact quantity (``2048`` -> ``"2Gi"``)."""
    if mebibytes != 0 and mebibytes % (1024 * 1024) == 0:
        return f"{mebibytes // (1024 * 1024)}Ti"
    if mebibytes != 0 and mebibytes % 1024 == 0:
        return f"{mebibytes // 1024}Gi"
    return f"{mebibytes}Mi"


# What the CRD's rule says of each mistake (the value is put in front).
POSITIVE_MESSAGE = "must be a positive quantity such as 64Mi"
AT_MOST_MESSAGE = f"must be at most {format_mebibytes(MAX_EPC_MIB)}"
WHOLE_MEBIBYTES_MESSAGE = (
    "must be a whole number of MiB (EPC is counted in MiB; a bare number counts bytes), "
    "such as 64Mi or 1Gi"
)


def _as_text(value: object) -> object:
    """An integer quantity as Kubernetes reads one: a count of bytes, like ``"67108864"``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_mebibytes(value: str) -> str:
    parse_mebibytes(value)
    return value


def _quantity_rules(value: str) -> list[dict[str, str]]:
    """The rule the apiserver checks on the quantity ``value`` (a CEL string expression).

    One rule, so the apiserver checks each quantity once per write (it evaluates every
    rule of an object on every write, status patches included); its message expression,
    evaluated only for a refused value, names the first mistake (no quantity or not
    positive, above 1Ti, not a whole number of MiB), so each mistake is reported once.
    The messages name the value (the apiserver shows an integer-or-string field's value
    as "").
    """
    quantity = f"quantity({value})"
    # isInteger() is false for a quantity written with a fraction, such as 1.5Gi
    # (1536Mi): those are judged in floating point, exact for whole MiB up to 1Ti (2^40
    # bytes); what it cannot tell apart (a nano-byte off) the operator's model refuses.
    mebibytes = f"{quantity}.asApproximateFloat() / {float(MIB)}"
    whole_mebibytes = (
        f"isQuantity({value}) && {quantity}.isGreaterThan(quantity('0')) "
        f"&& {quantity}.compareTo(quantity('{format_mebibytes(MAX_EPC_MIB)}')) <= 0 "
        f"&& ({quantity}.isInteger() ? {quantity}.asInteger() % {MIB} == 0 "
        f": double(int({mebibytes})) == {mebibytes})"
    )
    mistake = (
        f"!isQuantity({value}) || !{quantity}.isGreaterThan(quantity('0')) "
        f"? '{POSITIVE_MESSAGE}' "
        f": {quantity}.compareTo(quantity('{format_mebibytes(MAX_EPC_MIB)}')) > 0 "
        f"? '{AT_MOST_MESSAGE}' "
        f": '{WHOLE_MEBIBYTES_MESSAGE}'"
    )
    return [
        {
            "rule": whole_mebibytes,
            "messageExpression": f"{value} + ': ' + ({mistake})",
            "message": "must be a positive whole number of MiB, at most "
            f"{format_mebibytes(MAX_EPC_MIB)}, such as 64Mi",
        }
    ]


# A quantity in the API that must be a positive whole number of MiB: ``64Mi``, ``1Gi``,
# or, as in a resource request (``x-kubernetes-int-or-string``), an integer number of
# bytes (``67108864``), which the operator reads as its string.
EPCQuantity = Annotated[
    str,
    BeforeValidator(_as_text),
    AfterValidator(_check_mebibytes),
    WithJsonSchema(
        {
            "description": "A quantity such as 64Mi (an integer counts bytes).",
            "x-kubernetes-int-or-string": True,
            # Exactly this anyOf, or the schema is not structural.
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-validations": _quantity_rules("string(self)"),
        }
    ),
]

# The same as a string only, for fields in long lists: the apiserver bounds the cost of
# CEL rules, and an integer-or-string value has no maxLength to bound it by.
EPCQuantityString = Annotated[
    str,
    AfterValidator(_check_mebibytes),
    Field(max_length=32, json_schema_extra={"x-kubernetes-validations": _quantity_rules("self")}),
]
