"""JSON as the standard has it: NaN and infinity, which it lacks, are written as null."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_null(value: Any) -> Any:
  """`value` with every non-finite float replaced by None, through dicts, lists and tuples."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {key: finite_or_null(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_null(item) for item in value]
  return value


def dumps(value: Any, **json_kwargs: Any) -> str:
  """json.dumps of `finite_or_null(value)`; never writes NaN or Infinity."""
  return json.dumps(finite_or_null(value), allow_nan=False, **json_kwargs)
