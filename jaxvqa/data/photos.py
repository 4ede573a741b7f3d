"""A set of real photographs from Debian packages, with each one's licence, for make-corpus.

`fetch_photos` downloads packages (`apt-get download`, no install) or takes local .deb files,
unpacks them (`dpkg -x`), keeps their photographs and writes:

    OUT/images/PACKAGE/...      each kept photo as a JPEG, the package's own path less `usr/share/`
    OUT/images/PACKAGE/copyright  the package's copyright file (attribution for CC BY photos)
    OUT/photos.jsonl            one record per photo (see `fetch_photos`)
    OUT/LICENSES.md             package, version, licence, count

Kept: JPEG, PNG and WebP files of at least MIN_LONG_SIDE × MIN_SHORT_SIDE, opaque, not already kept
(the same bytes, or the same picture at another size: a 16×16 gradient fingerprint), and not named
as a render by `PHOTO_SELECTION` (which says, for the packages checked by eye, which of their
images are photographs). Symlinks and SVGs are never photos.

Stored size: a photo larger than `max_side` on its long side is downscaled (Lanczos) and saved as
JPEG quality 95 with full-resolution chroma (4:4:4): downscaling a clean photograph keeps it clean
(it averages away noise and any artefacts of the package's own JPEG), and the corpus cuts
native-resolution windows out of the stored image, so that image is the pristine reference. Chroma
is halved once, later, by the corpus's yuv420p encode. A JPEG already small enough is copied
byte for byte.

Default packages (Debian 12, checked by eye): 42 photographs, lomiri-wallpapers-16.04 14,
mate-backgrounds 12 (nature/), plasma-workspace-wallpapers 11, palapeli-data 4,
lomiri-wallpapers-20.04 1; 29.6 MB stored at --max-side 1920, 15.7 MB at 1280 (a 170 MB
download, 30 s on 2 cores). Left out as renders: ukui-wallpapers, gnome-backgrounds,
sway-backgrounds, desktop-base, lomiri-wallpapers, and most of plasma's and mate's images. No other package of this Debian ships wallpaper-size
photographs in numbers (checked: debian-edu-artwork-*, gcompris-qt-data, kstars-data, digikam-data,
hugin-data, jigzo-data).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from jaxvqa.data.deb_copyright import CopyrightFile

MANIFEST_NAME = "photos.jsonl"
LICENCES_NAME = "LICENSES.md"
IMAGES_DIR = "images"
DEFAULT_MAX_SIDE = 1920
JPEG_QUALITY = 95
MIN_LONG_SIDE, MIN_SHORT_SIDE = 1280, 720
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
FINGERPRINT_SIDE = 16
SAME_PICTURE_BITS = 16  # of 256 fingerprint bits may differ between sizes of one picture
SAME_ASPECT_TOLERANCE = 0.02


@dataclasses.dataclass(frozen=True)
class PhotoSelection:
  """Which images of a package are photographs: globs over installed paths. `include=None`
  keeps every image, `()` none (a package of renders)."""

  include: tuple[str, ...] | None = None
  exclude: tuple[str, ...] = ()

  def keeps(self, installed_path: str) -> bool:
    if any(fnmatch.fnmatchcase(installed_path, glob) for glob in self.exclude):
      return False
    return self.include is None or any(
        fnmatch.fnmatchcase(installed_path, glob) for glob in self.include
    )


_PLASMA_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "OneStandsOut",
    "Path",
    "summer_1am",
)
# Checked by eye in Debian 12 (bookworm); a package missing here keeps all its images.
PHOTO_SELECTION = {
    # The others are renders and paintings (Altai, Autumn, Flow, Kay, Volna, ...).
    "plasma-workspace-wallpapers": PhotoSelection(
        include=tuple(f"usr/share/wallpapers/{name}/contents/images/*" for name in _PLASMA_PHOTOS)
    ),
    "lomiri-wallpapers-16.04": PhotoSelection(exclude=("*/umang_by_Abhishek_Mudgal.jpg",)),
    "lomiri-wallpapers-20.04": PhotoSelection(include=("*/Kleiber_by_Lukas_Baubkus.jpg",)),
    "mate-backgrounds": PhotoSelection(include=("usr/share/backgrounds/mate/nature/*",)),
    "palapeli-data": PhotoSelection(include=("usr/share/palapeli/collection/*",)),
    # Renders only: abstract art, logos, flat illustrations.
    "lomiri-wallpapers": PhotoSelection(include=()),
    "ukui-wallpapers": PhotoSelection(include=()),
    "gnome-backgrounds": PhotoSelection(include=()),
    "sway-backgrounds": PhotoSelection(include=()),
    "desktop-base": PhotoSelection(include=()),
}
DEFAULT_PACKAGES = (
    "plasma-workspace-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "mate-backgrounds",
    "palapeli-data",
)


class PhotoFetchError(RuntimeError):
  """A tool, package or file that fetch-photos needs is missing; the message names it."""


@dataclasses.dataclass
class _Tally:
  # Declarative data: counters, alike in shape to other field lists (models/fusion.py).
  photos: int = 0
  not_photos: int = 0
  too_small: int = 0
  transparent: int = 0
  duplicates: int = 0
  unreadable: int = 0
  stored_bytes: int = 0


def _require_tool(name: str, why: str) -> str:
  path = shutil.which(name)
  if path is None:
    raise PhotoFetchError(f"{name} not found on PATH ({why})")
  return path


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
  return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def _deb_field(deb: Path, field: str) -> str:
  dpkg_deb = _require_tool("dpkg-deb", "it reads a .deb's name and version")
  result = _run([dpkg_deb, "--field", str(deb), field])
  if result.returncode != 0 or not result.stdout.strip():
    raise PhotoFetchError(f"{deb}: not a readable .deb ({result.stderr.strip() or 'no ' + field})")
  return result.stdout.strip()


def download_deb(package: str, into: Path) -> Path:
  """`apt-get download PACKAGE` into `into` (nothing is installed); the .deb's path."""
  apt_get = _require_tool("apt-get", "it downloads packages; or pass local files with --deb")
  result = _run([apt_get, "download", package], cwd=into)
  debs = sorted(into.glob(f"{package}_*.deb"))
  if result.returncode != 0 or not debs:
    errors = [line for line in result.stderr.splitlines() if line.startswith("E:")]
    reason = errors[-1][2:].strip() if errors else result.stderr.strip() or "no .deb written"
    raise PhotoFetchError(
        f"package {package!r} could not be downloaded ({reason}); check the name with "
        f"`apt-cache policy {package}` and run `apt-get update`"
    )
  return debs[-1]


def unpack_deb(deb: Path, into: Path) -> None:
  dpkg = _require_tool("dpkg", "it unpacks .deb files")
  result = _run([dpkg, "-x", str(deb), str(into)])
  if result.returncode != 0:
    raise PhotoFetchError(f"dpkg -x {deb} failed: {result.stderr.strip()}")


def _fingerprint(image) -> int:
  """256 bits of horizontal luma gradient signs on a 17×16 thumbnail: equal (within a few bits)
  for one picture at any size, different for different pictures."""
  import numpy as np
  from PIL import Image

  small = image.convert("L").resize((FINGERPRINT_SIDE + 1, FINGERPRINT_SIDE), Image.Resampling.BOX)
  luma = np.asarray(small, np.int16)
  bits = (luma[:, 1:] > luma[:, :-1]).ravel()
  return int("".join("1" if bit else "0" for bit in bits), 2)


def _same_picture(record: dict, width: int, height: int, fingerprint: int) -> bool:
  aspect = record["source_width"] / record["source_height"]
  if abs(aspect / (width / height) - 1) > SAME_ASPECT_TOLERANCE:
    return False
  return bin(int(record["fingerprint"], 16) ^ fingerprint).count("1") <= SAME_PICTURE_BITS


def _is_opaque(image) -> bool:
  if "A" not in image.getbands() and "transparency" not in image.info:
    return True
  return image.convert("RGBA").getchannel("A").getextrema()[0] == 255


def _stored_bytes(image, source_bytes: bytes, max_side: int) -> bytes:
  """The photo as stored: the package's JPEG itself when it is small enough, else a Lanczos
  downscale (or re-encode) as JPEG quality 95, 4:4:4 (see the module docstring)."""
  from PIL import Image, ImageOps

  upright = image.getexif().get(0x0112, 1) == 1  # EXIF orientation: as stored
  if image.format == "JPEG" and max(image.size) <= max_side and upright:
    return source_bytes
  image = ImageOps.exif_transpose(image).convert("RGB")
  scale = max_side / max(image.size)
  if scale < 1:
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
  buffer = io.BytesIO()
  image.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)
  return buffer.getvalue()


def _stored_path(package: str, installed_path: str, taken: set[str]) -> str:
  """`images/PACKAGE/<installed path less usr/share/>.jpg`, unique among `taken`."""
  relative = Path(installed_path)
  if relative.parts[:2] == ("usr", "share"):
    relative = relative.relative_to("usr/share")
  stem = Path(IMAGES_DIR, package, relative).with_suffix("")
  path, number = f"{stem}.jpg", 2
  while path in taken:
    path, number = f"{stem}-{number}.jpg", number + 1
  return path


def _candidates(root: Path) -> list[Path]:
  return sorted(
      path
      for path in root.rglob("*")
      if path.suffix.lower() in PHOTO_SUFFIXES and path.is_file() and not path.is_symlink()
  )


def _photos_of_package(
    root: Path,
    package: str,
    version: str,
    out_dir: Path,
    max_side: int,
    kept: list[dict],
    tally: _Tally,
) -> list[dict]:
  """The records of `package`'s photographs (unpacked at `root`), their files written; `kept`
  (every photo kept so far) is what a duplicate is looked for in."""
  from PIL import Image

  copyright_path = root / "usr" / "share" / "doc" / package / "copyright"
  copyright_file = CopyrightFile(
      copyright_path.read_text(errors="replace") if copyright_path.is_file() else ""
  )
  selection = PHOTO_SELECTION.get(package, PhotoSelection())
  sized = []
  for path in _candidates(root):
    installed = path.relative_to(root).as_posix()
    if not selection.keeps(installed):
      tally.not_photos += 1
      continue
    try:
      with Image.open(path) as image:
        width, height = image.size
    except OSError:
      tally.unreadable += 1
      continue
    if max(width, height) < MIN_LONG_SIDE or min(width, height) < MIN_SHORT_SIDE:
      tally.too_small += 1
      continue
    sized.append((width * height, installed, path, width, height))
  records = []
  taken = {record["path"] for record in kept}
  # Largest first, so of one picture at several sizes the largest is the one kept.
  for _, installed, path, width, height in sorted(sized, key=lambda item: (-item[0], item[1])):
    source_bytes = path.read_bytes()
    source_sha256 = hashlib.sha256(source_bytes).hexdigest()
    with Image.open(io.BytesIO(source_bytes)) as image:
      image.load()
      if not _is_opaque(image):
        tally.transparent += 1
        continue
      fingerprint = _fingerprint(image)
      if any(
          record["source_sha256"] == source_sha256
          or _same_picture(record, width, height, fingerprint)
          for record in kept + records
      ):
        tally.duplicates += 1
        continue
      stored = _stored_bytes(image, source_bytes, max_side)
    relative = _stored_path(package, installed, taken)
    taken.add(relative)
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(stored)
    with Image.open(io.BytesIO(stored)) as stored_image:
      stored_width, stored_height = stored_image.size
    licence = copyright_file.licence_of(installed)
    records.append(
        {
            "path": relative,
            "package": package,
            "version": version,
            "licence": licence.licence,
            "copyright": licence.copyright,
            "width": stored_width,
            "height": stored_height,
            "sha256": hashlib.sha256(stored).hexdigest(),
            "source_path": installed,
            "source_width": width,
            "source_height": height,
            "source_sha256": source_sha256,
            "fingerprint": f"{fingerprint:064x}",
            "max_side": max_side,
        }
    )
    tally.photos += 1
    tally.stored_bytes += len(stored)
  if records and copyright_path.is_file():
    shutil.copyfile(copyright_path, out_dir / IMAGES_DIR / package / "copyright")
  return records


def read_photo_set(photo_dir: str | os.PathLike) -> list[dict]:
  """The records of `photo_dir`/photos.jsonl, each with `path` made absolute."""
  photo_dir = Path(photo_dir).absolute()
  manifest = photo_dir / MANIFEST_NAME
  if not manifest.is_file():
    raise FileNotFoundError(
        f"{manifest}: no such file; make the photo set with `jaxvqa fetch-photos --out {photo_dir}`"
    )
  records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
  return [dict(record, path=str(photo_dir / record["path"])) for record in records]


def _read_manifest(out_dir: Path) -> list[dict]:
  manifest = out_dir / MANIFEST_NAME
  if not manifest.is_file():
    return []
  return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def _write_atomically(path: Path, text: str) -> None:
  partial = path.with_name(f".{path.name}.tmp")
  partial.write_text(text)
  os.replace(partial, path)


def licences_table(records: Sequence[dict]) -> str:
  """LICENSES.md: one row per (package, version, licence) with its photo count."""
  counts: dict[tuple[str, str, str], int] = {}
  for record in records:
    key = (record["package"], record["version"], record["licence"])
    counts[key] = counts.get(key, 0) + 1
  lines = [
      "# Licences of the photographs in this set",
      "",
      "Made by `jaxvqa fetch-photos`. Each photo's licence and copyright holder are in",
      f"`{MANIFEST_NAME}`; each package's full copyright file is `{IMAGES_DIR}/PACKAGE/copyright`.",
      "",
      "| package | version | licence | photos |",
      "| --- | --- | --- | --- |",
  ]
  lines += [f"| {p} | {v} | {licence} | {n} |" for (p, v, licence), n in sorted(counts.items())]
  return "\n".join(lines) + "\n"


def _write_set(out_dir: Path, records: Sequence[dict]) -> None:
  _write_atomically(out_dir / MANIFEST_NAME, "".join(json.dumps(r) + "\n" for r in records))
  _write_atomically(out_dir / LICENCES_NAME, licences_table(records))


def _already_there(records: Sequence[dict], out_dir: Path, package: str, max_side: int) -> bool:
  own = [record for record in records if record["package"] == package]
  return bool(own) and all(
      record["max_side"] == max_side and (out_dir / record["path"]).is_file() for record in own
  )


def _progress(line: str) -> None:
  print(f"fetch-photos: {line}", file=sys.stderr, flush=True)


def fetch_photos(
    out_dir: str | os.PathLike,
    *,
    packages: Sequence[str] = (),
    debs: Sequence[str | os.PathLike] = (),
    max_side: int = DEFAULT_MAX_SIDE,
) -> list[dict]:
  """Adds the photographs of `packages` (downloaded) and `debs` (local files) to `out_dir`.

  A package whose photos are already there at this `max_side` is skipped (delete its records'
  files to fetch it again); records of packages not named are kept.

  Returns:
    every record of OUT/photos.jsonl: path (relative to `out_dir`), package, version, licence
    (the DEP-5 short name for this file, else the package's), copyright (its holders), width and
    height (as stored), sha256 (of the stored file), source_path, source_width, source_height and
    source_sha256 (the file in the package), fingerprint, max_side.
  Raises:
    PhotoFetchError: apt-get, dpkg or a .deb is missing, or a package cannot be downloaded.
  """
  if max_side < MIN_SHORT_SIDE:
    raise ValueError(f"max_side must be ≥ {MIN_SHORT_SIDE}, got {max_side}")
  out_dir = Path(out_dir)
  for deb in debs:
    if not Path(deb).is_file():
      raise PhotoFetchError(f"--deb {deb}: no such file")
  out_dir.mkdir(parents=True, exist_ok=True)
  records = _read_manifest(out_dir)
  with tempfile.TemporaryDirectory(prefix="jaxvqa-photos-") as scratch:
    sources = [(package, None) for package in packages] + [(None, Path(deb)) for deb in debs]
    for package, deb in sources:
      if deb is not None:
        package = _deb_field(deb, "Package")
      if _already_there(records, out_dir, package, max_side):
        count = sum(record["package"] == package for record in records)
        _progress(f"{package}: {count} photos already there")
        continue
      if deb is None:
        download_dir = Path(scratch, "debs")
        download_dir.mkdir(exist_ok=True)
        deb = download_deb(package, download_dir)
      version = _deb_field(deb, "Version")
      root = Path(scratch, "root", package)
      root.mkdir(parents=True)
      unpack_deb(deb, root)
      records = [record for record in records if record["package"] != package]
      tally = _Tally()
      records += _photos_of_package(root, package, version, out_dir, max_side, records, tally)
      shutil.rmtree(root)
      if deb.parent == Path(scratch, "debs"):
        deb.unlink()
      _write_set(out_dir, records)
      _progress(
          f"{package} {version}: {tally.photos} photos, {tally.stored_bytes / 1e6:.1f} MB "
          f"(left out: {tally.not_photos} not photographs, {tally.too_small} smaller than "
          f"{MIN_LONG_SIDE}x{MIN_SHORT_SIDE}, {tally.duplicates} duplicates, "
          f"{tally.transparent} with transparency, {tally.unreadable} unreadable)"
      )
  _write_set(out_dir, records)
  total = sum((out_dir / record["path"]).stat().st_size for record in records)
  _progress(
      f"{len(records)} photos from {len({r['package'] for r in records})} packages in {out_dir}, "
      f"{total / 1e6:.1f} MB"
  )
  return records
