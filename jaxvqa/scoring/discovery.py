"""The files a `jaxvqa score` run reads: paths, directories and globs expanded; unreadable ones named.

Only regular files are ever opened (`file_problem`): a FIFO would block and a device is never a
video. Every directory that cannot be searched and every symbolic link loop becomes a
`ScoreFailure` with the reason, never a silent skip.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from jaxvqa.data.make_steps import VIDEO_EXTENSIONS
from jaxvqa.scoring.names import os_reason, printable_name
from jaxvqa.scoring.results import ScoreFailure


def _is_video_name(name: str) -> bool:
  return Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith(".")


def _walk_videos(directory: str, failures: list[ScoreFailure]) -> list[str]:
  """Video files under `directory`, recursively, sorted; hidden files and directories skipped.

  Symbolic links to directories are followed, except one that leads back to a directory being
  walked (a loop). A directory that cannot be listed, and a loop, go to `failures`.
  """
  found: list[str] = []

  def visit(path: str, ancestors: frozenset[tuple[int, int]]) -> None:
    try:
      with os.scandir(path) as scan:
        entries = sorted(
            (entry for entry in scan if not entry.name.startswith(".")),
            key=lambda entry: entry.name,
        )
    except OSError as error:
      failures.append(ScoreFailure(path, f"directory not searched: {os_reason(error)}"))
      return
    subdirectories = []
    for entry in entries:
      try:
        is_directory = entry.is_dir()  # follows symbolic links
      except OSError:  # a link loop or a vanished target: a candidate file, reported when checked
        is_directory = False
      if is_directory:
        subdirectories.append(entry.path)
      elif _is_video_name(entry.name):
        found.append(entry.path)
    for subdirectory in subdirectories:
      try:
        info = os.stat(subdirectory)
      except OSError as error:
        failures.append(ScoreFailure(subdirectory, f"directory not searched: {os_reason(error)}"))
        continue
      key = (info.st_dev, info.st_ino)
      if key in ancestors:
        failures.append(
            ScoreFailure(
                subdirectory,
                "directory not searched: symbolic link loop (it leads back to a "
                f"directory above it, {printable_name(os.path.realpath(subdirectory))})",
            )
        )
        continue
      visit(subdirectory, ancestors | {key})

  try:
    top = os.stat(directory)
  except OSError as error:
    failures.append(ScoreFailure(directory, f"directory not searched: {os_reason(error)}"))
    return found
  visit(directory, frozenset({(top.st_dev, top.st_ino)}))
  return found


def find_videos(inputs: Sequence[str]) -> tuple[list[str], list[ScoreFailure]]:
  """The files to score for the command's PATH arguments, in order, each once.

  A path that exists is taken literally (so names with '*' or '[' work): a file is scored
  whatever its extension (it was asked for by name); a directory is walked for files with a
  video extension. A path that does not exist but holds glob characters is expanded
  (`**` recursive); its matches are treated the same way. Anything else is a failure, and so is
  a directory that cannot be searched (named, with the reason). Python's glob skips directories it
  cannot read without a word: a directory given itself is searched with every error reported.
  """
  files, failures, seen = [], [], set()

  def add(path: str) -> None:
    key = os.path.realpath(path)
    if key not in seen:
      seen.add(key)
      files.append(path)

  def add_existing(path: str) -> None:
    if os.path.isdir(path):
      for found in _walk_videos(path, failures):
        add(found)
    else:
      add(path)

  for given in inputs:
    if os.path.lexists(given):
      add_existing(given)
    elif glob.has_magic(given):
      matches = sorted(glob.glob(given, recursive=True))
      if not matches:
        failures.append(ScoreFailure(given, "no file matches this pattern"))
      for match in matches:
        add_existing(match)
    else:
      failures.append(ScoreFailure(given, "file not found"))
  return files, failures


def file_problem(path: str) -> str | None:
  """Why `path` cannot be read as a video file, found without reading it; None when it can.

  Only a regular file is opened: reading a FIFO waits for a writer (forever, in a batch job) and
  reading a device is never a video. Unreadable files are named as such here, not left to decord,
  which reports every open failure as "not a video".
  """
  try:
    info = os.stat(path)
  except OSError as error:
    if error.errno == errno.ENOENT and os.path.islink(path):
      return f"broken symbolic link (its target {printable_name(os.readlink(path))} does not exist)"
    return "file not found" if error.errno == errno.ENOENT else os_reason(error)
  kinds = (
      (stat.S_ISDIR, "a directory"),
      (stat.S_ISFIFO, "a FIFO (named pipe)"),
      (stat.S_ISCHR, "a character device"),
      (stat.S_ISBLK, "a block device"),
      (stat.S_ISSOCK, "a socket"),
  )
  for test, kind in kinds:
    if test(info.st_mode):
      return f"{kind}, not a video file (not opened)"
  try:
    os.close(os.open(path, os.O_RDONLY))
  except OSError as error:
    return os_reason(error)
  return None
