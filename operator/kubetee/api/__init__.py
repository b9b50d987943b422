"""The KubeTEE API: pydantic models of the ``kubetee.io`` resources and their CRDs."""

from kubetee.api.conditions import Condition
from kubetee.api.quantity import QuantityError, format_mebibytes, parse_mebibytes

__all__ = ["Condition", "QuantityError", "format_mebibytes", "parse_mebibytes"]
