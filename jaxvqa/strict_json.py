"""JSON as the standard has it: NaN and infinity, which it lacks, are written as null."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_or_null(value: Any) -> Any:
  """`value` with every non-finite float replaced by None, through dicts, lists and tuples;
  numpy scalars become Python ones and dict keys strings (metrics arrive as numpy values)."""
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {str(key): finite_or_null(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_null(item) for item in value]
  return value


def dumps(value: Any, **json_kwargs: Any) -> str:
  """json.dumps of `finite_or_null(value)`; never writes NaN or Infinity."""
  return json.dumps(finite_or_null(value), allow_nan=False, **json_kwargs)
