"""The licence of a file installed by a Debian package, from the package's `copyright` file.

A machine-readable copyright file (DEP-5,
https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/) is a list of paragraphs; each
`Files:` paragraph names source-tree globs and their `Copyright:` and `License:`, and the last
paragraph whose globs match a file is the one that applies to it. Installed paths are not source
paths (`usr/share/backgrounds/mate/nature/Aqua.jpg` is `nature/Aqua.jpg` in the
source, and lomiri installs `16.04/Bridge.jpg` as `usr/share/backgrounds/Bridge.jpg`), so a glob
matches an installed file when it matches a tail of its path, or its last part matches the file's
name.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import PurePosixPath

DEP5_FORMAT_PREFIX = "https://www.debian.org/doc/packaging-manuals/copyright-format/"
NOT_STATED = "not stated in the package's copyright file"
FREE_FORM = "see the package's copyright file (free-form, not DEP-5)"


@dataclasses.dataclass(frozen=True)
class FileLicence:
  """What a copyright file says of one file: the licence's short name and who holds the rights."""

  licence: str
  copyright: str


def _paragraphs(text: str) -> list[dict[str, str]]:
  """RFC 822-style paragraphs: field name → value, continuation lines joined by newlines."""
  paragraphs, fields, name = [], {}, None
  for line in text.splitlines() + [""]:
    if not line.strip():
      if fields:
        paragraphs.append(fields)
      fields, name = {}, None
    elif line[0] in " \t" and name is not None:
      fields[name] += "\n" + line.strip()
    elif ":" in line and not line.startswith("#"):
      name, value = line.split(":", 1)
      name = name.strip().lower()
      fields[name] = value.strip()
  return paragraphs


def _glob_matches(pattern: str, installed: PurePosixPath) -> bool:
  """Whether a DEP-5 glob (`*` crosses `/`) names the installed file."""
  tails = ["/".join(installed.parts[start:]) for start in range(len(installed.parts))]
  if any(fnmatch.fnmatchcase(tail, pattern) for tail in tails):
    return True
  last = pattern.rsplit("/", 1)[-1]
  return last not in ("*", "") and fnmatch.fnmatchcase(installed.name, last)


def _one_line(value: str) -> str:
  return re.sub(r"\s+", " ", value).strip()


class CopyrightFile:
  """A package's `usr/share/doc/PKG/copyright`, parsed once, asked per installed file."""

  def __init__(self, text: str):
    paragraphs = _paragraphs(text)
    header = paragraphs[0] if paragraphs else {}
    self.machine_readable = header.get("format", "").startswith(DEP5_FORMAT_PREFIX.rstrip("/"))
    self._files = [p for p in paragraphs if "files" in p] if self.machine_readable else []
    # The package's licence: the `Files: *` paragraph's, else the header's, else none stated.
    catch_all = [p for p in self._files if "*" in p["files"].split()]
    source = catch_all[0] if catch_all else header
    self.package_licence = FileLicence(
        _one_line(source.get("license", "").split("\n")[0])
        or (NOT_STATED if self.machine_readable else FREE_FORM),
        _one_line(source.get("copyright", "")),
    )

  def licence_of(self, installed_path: str) -> FileLicence:
    """The licence of `installed_path` (relative to the package root, e.g. `usr/share/...`):
    the last matching `Files:` paragraph's, else the package's."""
    installed = PurePosixPath(installed_path)
    for paragraph in reversed(self._files):
      if any(_glob_matches(pattern, installed) for pattern in paragraph["files"].split()):
        return FileLicence(
            _one_line(paragraph.get("license", "").split("\n")[0]) or NOT_STATED,
            _one_line(paragraph.get("copyright", "")),
        )
    return self.package_licence
