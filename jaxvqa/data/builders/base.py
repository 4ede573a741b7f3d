"""What every jaxvqa TFDS builder shares: configs, content splits, score scaling, the base class.

Every builder here reads a directory the user filled by hand (TFDS `manual_dir`), stores the
media as its ENCODED bytes (never decoded frames) in ArrayRecord files, and is read back
without TensorFlow through `builder.as_data_source(split)` and Grain (`jaxvqa.data.pipeline`).

Feature schema shared by the public-set builders (`LabelledMediaBuilder`):

    id          int64    row of the official label file (0-based)
    name        text     media file, relative to manual_dir (what error messages name)
    source      text     content identity; splits never share one
    video|image bytes    the encoded file
    label       float32  score normalised to [0, 1], higher is better (what the model trains on)
    raw_score   float32  the score as published (MOS or DMOS)

Score normalisation: min-max over every row of the set's official label file(s), flipped
when the published score is "lower is better" (DMOS). Min-max makes the range exactly
[0, 1] independently of the split, and being affine it leaves PLCC/SRCC/KRCC unchanged.
`LabelledMediaBuilder.label_scale` gives the map back to the published units, in which every
report is made (`jaxvqa.data.label_scale`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxvqa.data import label_scale as label_scale_lib

SPLIT_NAMES = ("train", "validation", "test")


def example_features(
    media: str, **more: tfds.features.FeatureConnector
) -> tfds.features.FeaturesDict:
  """The TFDS features of a jaxvqa set: id, name, source, the encoded file under `media` ("video"
  or "image") and label (each builder says what its label is), then `more`."""
  return tfds.features.FeaturesDict(
      {
          "id": tfds.features.Scalar(dtype=np.int64),
          "name": tfds.features.Text(),
          "source": tfds.features.Text(),
          media: tfds.features.Tensor(shape=(), dtype=np.object_),
          "label": tfds.features.Scalar(dtype=np.float32),
          **more,
      }
  )


class ManualDataMissingError(FileNotFoundError):
  """The manual_dir, or a file the builder needs inside it, is missing."""


@dataclasses.dataclass(eq=False)
class SplitConfig(tfds.core.BuilderConfig):
  """How a set without an official split is split by content.

  Fractions are over distinct contents (sources / reference images), not over files; a
  zero fraction drops that split. `prepare()` names the config after these values and a
  fingerprint of the label files, so a changed split or label file never reuses a stale
  prepared copy.
  """

  seed: int = 0
  train_fraction: float = 0.8
  validation_fraction: float = 0.0
  test_fraction: float = 0.2

  def fractions(self) -> dict[str, float]:
    return {
        "train": self.train_fraction,
        "validation": self.validation_fraction,
        "test": self.test_fraction,
    }


def manual_instructions(title: str, where: str, layout: str) -> str:
  """The text shown when a manual_dir is missing: what, from where, and the layout."""
  return (
      f"Download {title} from {where}, then extract it so that manual_dir looks like this:\n"
      f"{layout}"
  )


def split_contents(
    contents: Sequence[str], fractions: Mapping[str, float], seed: int
) -> dict[str, str]:
  """Assigns each distinct content to one split, deterministically from `seed`.

  Counts follow the fractions by largest remainder; every split with a positive fraction
  gets at least one content (taken from the largest split), so a tiny set still has a
  train, validation and test part. Fewer contents than such splits is an error.

  Returns: {content: split_name}.
  """
  unique = sorted(set(contents))
  wanted = {name: f for name, f in fractions.items() if f > 0}
  if not wanted:
    raise ValueError(f"split fractions {dict(fractions)} are all zero; give at least one > 0")
  if len(unique) < len(wanted):
    raise ValueError(
        f"{len(unique)} distinct contents cannot fill the {len(wanted)} splits {sorted(wanted)}: "
        "add sources, or set the fraction of a split to 0"
    )
  total = sum(wanted.values())
  exact = {name: len(unique) * f / total for name, f in wanted.items()}
  counts = {name: int(np.floor(x)) for name, x in exact.items()}
  by_remainder = sorted(wanted, key=lambda name: (counts[name] - exact[name], name))
  for name in by_remainder[: len(unique) - sum(counts.values())]:
    counts[name] += 1
  for name in wanted:
    if counts[name] == 0:
      donor = max(wanted, key=lambda other: counts[other])
      counts[donor] -= 1
      counts[name] += 1
  order = np.random.default_rng(seed).permutation(len(unique))
  assignment, start = {}, 0
  for name in SPLIT_NAMES + tuple(sorted(set(wanted) - set(SPLIT_NAMES))):
    if name not in counts:
      continue
    for position in order[start : start + counts[name]]:
      assignment[unique[position]] = name
    start += counts[name]
  return assignment


def fingerprint(files: Sequence[Path]) -> str:
  """First 10 hex digits of the SHA-1 over the given files' bytes (label files, manifests)."""
  digest = hashlib.sha1()
  for path in files:
    digest.update(Path(path).name.encode())
    digest.update(Path(path).read_bytes())
  return digest.hexdigest()[:10]


def config_name(config: SplitConfig, label_fingerprint: str) -> str:
  """A config name that changes whenever the split or the label files change."""
  percent = "-".join(
      f"{round(100 * f)}"
      for f in (config.train_fraction, config.validation_fraction, config.test_fraction)
  )
  return f"seed{config.seed}-split{percent}-{label_fingerprint}"


class ManualDirBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of every jaxvqa builder: checks manual_dir before TFDS touches it.

  Subclasses set LABEL_FILES (paths relative to manual_dir that must exist) and
  MANUAL_DOWNLOAD_INSTRUCTIONS (from `manual_instructions`).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
  BUILDER_CONFIGS: ClassVar[list[SplitConfig]] = [SplitConfig(name="default")]
  LABEL_FILES: ClassVar[tuple[str, ...]] = ()
  # Whether records carry groups the group contrastive loss can use (bitrate rungs); sets
  # without them get groups from config.data.grouping (jaxvqa.data.grouping).
  HAS_GROUPS: ClassVar[bool] = False

  SCALE: ClassVar[label_scale_lib.LabelScale]  # the published score (label_scale.PUBLISHED)

  def label_scale(self, manual_dir: str | Path) -> label_scale_lib.LabelScale:
    """The map between the stored label and the set's own units: here the label is the published
    score itself; builders that rescale it anchor the scale at their label files."""
    del manual_dir
    return self.SCALE

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's own lookup goes through `importlib_resources` for packages installed in
    # editable mode, which is not installed here; the module file is what it wants.
    return epath.Path(inspect.getfile(cls))

  @classmethod
  def check_manual_dir(cls, manual_dir: str | Path) -> Path:
    """Returns manual_dir as a Path; raises ManualDataMissingError naming what is missing."""
    manual_dir = Path(manual_dir)
    if not manual_dir.is_dir():
      raise ManualDataMissingError(
          f"{cls.name}: manual_dir {manual_dir} does not exist.\n"
          f"{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    missing = [name for name in cls.LABEL_FILES if not (manual_dir / name).is_file()]
    if missing:
      raise ManualDataMissingError(
          f"{cls.name}: {', '.join(str(manual_dir / m) for m in missing)} not found.\n"
          f"{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    return manual_dir

  def _log_download_bytes(self) -> None:
    # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)"
    # on stdout, though nothing is downloaded: these builders read what manual_dir holds.
    logging.getLogger(__name__).info(
        "preparing data set %s (%s) in %s from its files (once; reused while its labels and "
        "split are unchanged)",
        self.name,
        self.builder_config.name,
        self.data_dir,
    )

  def _log_download_done(self) -> None:
    logging.getLogger(__name__).info("prepared data set %s in %s", self.name, self.data_dir)

  @classmethod
  def label_fingerprint(cls, manual_dir: str | Path) -> str:
    manual_dir = cls.check_manual_dir(manual_dir)
    return fingerprint([manual_dir / name for name in cls.LABEL_FILES])

  def download_and_prepare(self, *, download_config=None, **kwargs) -> None:
    manual_dir = download_config.manual_dir if download_config is not None else None
    if not self.is_prepared():
      if manual_dir is None:
        raise ManualDataMissingError(
            f"{self.name}: no manual_dir given; pass "
            "download_config=tfds.download.DownloadConfig(manual_dir=...).\n"
            f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
      self.check_manual_dir(manual_dir)
    super().download_and_prepare(download_config=download_config, **kwargs)


@dataclasses.dataclass(frozen=True)
class LabelRow:
  """One row of an official label file, resolved to a media file.

  name: media path relative to manual_dir. source: content identity (split unit).
  split: the official split, or None where the set has none.
  """

  name: str
  source: str
  raw_score: float
  split: str | None = None


def missing_media_error(
    builder_name: str, manual_dir: Path, missing: Sequence[str], instructions: str
) -> ManualDataMissingError:
  shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
  return ManualDataMissingError(
      f"{builder_name}: {len(missing)} media file(s) named by the label file are missing under "
      f"{manual_dir}: {shown}.\n{instructions}"
  )


class LabelledMediaBuilder(ManualDirBuilder, skip_registration=True):
  """A public quality set: one label file row per video or image (schema in module doc).

  Subclasses give MEDIA ("video" or "image"), SCALE (their entry of `label_scale.PUBLISHED`) and
  `read_rows`.
  """

  MEDIA: ClassVar[str]

  @abc.abstractmethod
  def read_rows(self, manual_dir: Path) -> list[LabelRow]:
    """Parses the official label file(s) into rows, in file order."""

  def label_scale(self, manual_dir: str | Path) -> label_scale_lib.LabelScale:
    """The published scale, anchored at the worst and best score of the label files in
    `manual_dir`: the map between the stored label and the set's own units."""
    return self.SCALE.anchored([row.raw_score for row in self.read_rows(Path(manual_dir))])

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__class__.__doc__,
        features=example_features(self.MEDIA, raw_score=tfds.features.Scalar(dtype=np.float32)),
    )

  def _split_generators(self, dl_manager):
    manual_dir = Path(dl_manager.manual_dir)
    rows = self.read_rows(manual_dir)
    missing = [row.name for row in rows if not (manual_dir / row.name).is_file()]
    if missing:
      raise missing_media_error(self.name, manual_dir, missing, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    published = [row.raw_score for row in rows]
    labels = self.SCALE.anchored(published).to_label(published)
    if rows[0].split is not None:
      split_of = [row.split for row in rows]
    else:
      by_source = split_contents(
          [row.source for row in rows], self.builder_config.fractions(), self.builder_config.seed
      )
      split_of = [by_source[row.source] for row in rows]
    return {
        split: self._generate_examples(
            manual_dir, [(i, row, labels[i]) for i, row in enumerate(rows) if split_of[i] == split]
        )
        for split in dict.fromkeys(split_of)
    }

  def _generate_examples(self, manual_dir: Path, rows: list[tuple[int, LabelRow, float]]):
    for row_id, row, label in rows:
      yield row_id, {
          "id": row_id,
          "name": row.name,
          "source": row.source,
          self.MEDIA: (manual_dir / row.name).read_bytes(),
          "label": label,
          "raw_score": row.raw_score,
      }
