"""The pydantic base every KubeTEE API model derives from.

Field names are snake_case in Python and camelCase on the wire, as Kubernetes spells
them; unknown fields are refused so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A strict, camelCase-on-the-wire part of a KubeTEE resource."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )
