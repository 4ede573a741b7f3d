"""Readers for the label-file formats the public quality sets publish: CSV and MATLAB .mat.

Each reader checks the columns / variables it needs and names the file and what was found
when they are absent, since a wrong or re-exported label file is the usual failure.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io


class LabelFileError(ValueError):
  """A label file exists but does not have the published columns / variables."""


@dataclasses.dataclass(frozen=True)
class CsvRow:
  """One data row of a label CSV, with where it came from so that a bad cell can be named."""

  path: Path
  line: int  # line number in the file, header = 1
  cells: dict[str, str]

  def text(self, column: str) -> str:
    return (self.cells[column] or "").strip()

  def number(self, column: str) -> float:
    try:
      return float(self.cells[column])
    except (TypeError, ValueError):
      raise self._error(column, "not a number") from None

  def flag(self, column: str) -> bool:
    value = self.text(column).lower()
    if value in ("true", "1", "1.0", "yes"):
      return True
    if value in ("false", "0", "0.0", "no"):
      return False
    raise self._error(column, "not a boolean")

  def _error(self, column: str, problem: str) -> LabelFileError:
    return LabelFileError(
        f"{self.path}: line {self.line}, column {column!r} is {self.cells[column]!r}, {problem}"
    )


def read_csv_rows(path: Path, required: Sequence[str]) -> list[CsvRow]:
  """The non-blank data rows of a CSV file with a header line; checks `required` columns."""
  with open(path, newline="", encoding="utf-8-sig") as file:
    reader = csv.DictReader(file)
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    absent = [name for name in required if name not in header]
    if absent:
      raise LabelFileError(
          f"{path}: columns {absent} not found (header is {header}); is this the official file?"
      )
    return [
        CsvRow(path, reader.line_num, cells)
        for cells in reader
        if any((value or "").strip() for value in cells.values())
    ]


def pick_column(path: Path, header: Sequence[str], choices: Sequence[str]) -> str:
  """The first of `choices` present in `header` (for files exported under varying names)."""
  for name in choices:
    if name in header:
      return name
  raise LabelFileError(
      f"{path}: none of the columns {list(choices)} found (header is {list(header)})"
  )


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
