"""The error hierarchy: stable codes, CamelCase Event reasons, JSON form."""

from __future__ import annotations

import re

from kubetee.attestation import errors


def _all_errors() -> list[type[errors.AttestationError]]:
    found: list[type[errors.AttestationError]] = []
    pending: list[type[errors.AttestationError]] = [errors.AttestationError]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.__subclasses__())
    # Other packages derive their own errors; this module's hierarchy is the subject here.
    return [cls for cls in found if cls.__module__ == errors.__name__]


def test_every_error_has_an_upper_snake_code_and_a_camel_case_reason() -> None:
    classes = _all_errors()
    assert len(classes) >= 17
    for cls in classes:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", cls.default_code), cls
        assert re.fullmatch(r"[A-Z][A-Za-z]+", cls.reason), cls
        assert not cls.reason.endswith("Error"), cls
        assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} missing from the drawing"


def test_code_may_be_specific_and_json_carries_it() -> None:
    error = errors.CollateralExpiredError("it expired", code="CERTIFICATE_EXPIRED")
    assert error.to_json() == {
        "verified": False,
        "error": "CERTIFICATE_EXPIRED",
        "reason": "CollateralExpired",
        "message": "it expired",
    }
    assert errors.MeasurementMismatchError("x").code == "MEASUREMENT_MISMATCH"
