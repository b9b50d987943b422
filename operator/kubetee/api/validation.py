"""Validation errors of the API models in words: one ``field: problem`` per line."""

from __future__ import annotations

from pydantic import ValidationError


def describe(error: ValidationError) -> str:
    """``spec.epc: must be more than zero; ...`` from a pydantic error, inputs left out.

    Inputs are left out on purpose: a rejected value might be a secret pasted in the
    wrong field, and this text goes into status conditions and Events.
    """
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)
