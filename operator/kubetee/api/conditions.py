"""Status conditions as the Kubernetes API conventions define them.

``status.conditions`` is a list-map keyed by ``type``; each entry says whether an
aspect holds (``status``), why in one CamelCase word (``reason``), why in words
(``message``), for which ``metadata.generation`` it was computed, and since when the
status has been what it is (``lastTransitionTime`` moves only when ``status`` does).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.config import JsonDict

from kubetee.api.base import ApiModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One observed aspect of a resource, such as Scheduled or Ready."""

    type: str = Field(
        description="Aspect this condition reports on, in CamelCase, such as Scheduled.",
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        max_length=64,
    )
    status: ConditionStatus = Field(description="Whether the aspect holds: True, False or Unknown.")
    reason: str = Field(
        description="Why the condition has its status, one CamelCase word such as InsufficientEPC.",
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        max_length=128,
    )
    message: str = Field(
        default="",
        description="Why the condition has its status, in words a user can act on.",
        max_length=4096,
    )
    observed_generation: int = Field(
        default=0,
        ge=0,
        description="metadata.generation of the resource this condition was computed for.",
    )
    last_transition_time: str = Field(
        description="When status last changed (RFC 3339); it does not move when only the "
        "reason or message change.",
        json_schema_extra={"format": "date-time"},
    )


# Extras that make ``conditions`` a list-map keyed by type on the apiserver.
CONDITIONS_SCHEMA_EXTRA: JsonDict = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
