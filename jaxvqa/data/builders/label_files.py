"""Readers for the label-file formats the public quality sets publish: CSV and MATLAB .mat.

Each reader checks the columns / variables it needs and names the file and what was found
when they are absent, since a wrong or re-exported label file is the usual failure.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io


class LabelFileError(ValueError):
  """A label file exists but does not have the published columns / variables."""


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
  """Rows of a CSV file with a header line, as {column: text}; checks `required` columns."""
  with open(path, newline="", encoding="utf-8-sig") as file:
    reader = csv.DictReader(file)
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    absent = [name for name in required if name not in header]
    if absent:
      raise LabelFileError(
          f"{path}: columns {absent} not found (header is {header}); is this the official file?"
      )
    return [row for row in reader if any((value or "").strip() for value in row.values())]


def pick_column(path: Path, header: Sequence[str], choices: Sequence[str]) -> str:
  """The first of `choices` present in `header` (for files exported under varying names)."""
  for name in choices:
    if name in header:
      return name
  raise LabelFileError(f"{path}: none of the columns {list(choices)} found (header is {list(header)})")


def parse_float(path: Path, row_number: int, column: str, text: str) -> float:
  try:
    return float(text)
  except (TypeError, ValueError):
    raise LabelFileError(
        f"{path}: row {row_number}, column {column!r} is {text!r}, not a number"
    ) from None


def parse_bool(path: Path, row_number: int, column: str, text: str) -> bool:
  value = (text or "").strip().lower()
  if value in ("true", "1", "1.0", "yes"):
    return True
  if value in ("false", "0", "0.0", "no"):
    return False
  raise LabelFileError(f"{path}: row {row_number}, column {column!r} is {text!r}, not a boolean")


def load_mat(path: Path, variables: Sequence[str]) -> dict[str, np.ndarray]:
  """The named variables of a MATLAB (v5/v7) .mat file."""
  try:
    contents = scipy.io.loadmat(path)
  except (ValueError, NotImplementedError, OSError) as error:
    raise LabelFileError(f"{path}: not a readable MATLAB v5/v7 file ({error})") from error
  absent = [name for name in variables if name not in contents]
  if absent:
    found = sorted(name for name in contents if not name.startswith("__"))
    raise LabelFileError(f"{path}: variables {absent} not found (it holds {found})")
  return {name: contents[name] for name in variables}


def mat_numbers(values: np.ndarray) -> np.ndarray:
  """A MATLAB row or column vector as float64 [N]."""
  return np.asarray(values, np.float64).reshape(-1)


def mat_strings(values: np.ndarray) -> list[str]:
  """A MATLAB cell array of strings (any orientation) as a flat list of str."""
  flat = np.asarray(values, dtype=object).reshape(-1)
  strings = []
  for cell in flat:
    while isinstance(cell, np.ndarray):
      cell = cell.reshape(-1)[0] if cell.size else ""
    strings.append(str(cell).strip())
  return strings
