"""File names as text that every output can hold, and OS errors in words."""

from __future__ import annotations

import errno
import os
import re


def escape_name(name: str) -> str:
  """A file name as text that any UTF-8 output holds, losslessly for every real name.

  Python reads a name that is not UTF-8 with its bad bytes as surrogates ('clip\\udcff.mp4' for the
  bytes b'clip\\xff.mp4'), which no encoder writes. Each such byte becomes the four characters
  \\xNN ('clip\\\\xff.mp4', shown by a shell as clip\\xff.mp4; `printf 'clip\\xff.mp4'` gives the
  name back); a UTF-8 name is unchanged.
  """
  try:
    return os.fsencode(name).decode("utf-8", "backslashreplace")
  except UnicodeEncodeError:  # a surrogate that no file system produced (e.g. from a JSON file)
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def file_key(name: str) -> str:
  """The file a name stands for, however it was spelt ('a.mp4', './a.mp4', '/abs/a.mp4', through
  a linked directory), as text: a name as given, or as an output row holds it (`escape_name`d).
  --resume compares files by it, so a file given another way is never scored or written twice."""
  return escape_name(os.path.realpath(name))


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
  """Whether `text` holds what a terminal acts on rather than shows (a newline, CR, ESC, C1)."""
  return _CONTROL_CHARACTERS.search(text) is not None


def printable_name(name: str) -> str:
  """`escape_name`, then control characters as escapes ('\\n', '\\x1b'): for lines read by people
  (stderr, the table), where a newline would forge a line and ESC would drive the terminal. Any
  text about a file goes through it: its name, and reasons that quote a decoder's words (which
  may embed the name).
  """
  return _CONTROL_CHARACTERS.sub(
      lambda match: match.group().encode("unicode_escape").decode("ascii"), escape_name(name)
  )


# OWASP's CSV-injection list: a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
  """A CSV text cell that a spreadsheet shows as text: a leading `'` before a formula start."""
  return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def os_reason(error: OSError) -> str:
  """An OSError in words, without the file name (the caller names it)."""
  if error.errno in (errno.EACCES, errno.EPERM):
    return "permission denied (its permissions keep this user out; fix them or run as its owner)"
  if error.errno == errno.ELOOP:
    return "symbolic link loop (too many levels of symbolic links)"
  text = error.strerror or type(error).__name__
  return text[:1].lower() + text[1:]
