"""TFDS builders for jaxvqa's data sets, and `prepare`, which builds one once and caches it.

    builder = prepare("konvid_1k", manual_dir="~/data/KoNViD-1k", data_dir="~/tfds")
    source = builder.as_data_source("train")       # random access, no TensorFlow needed

`BUILDERS` maps a short name to its builder class; the TFDS name of each class is
"jaxvqa_" + that name, so none can clash with TFDS's own catalogue.
"""

from __future__ import annotations

import dataclasses
import fcntl
from pathlib import Path

import tensorflow_datasets as tfds

from jaxvqa.data.builders import base
from jaxvqa.data.builders.base import ManualDataMissingError, SplitConfig
from jaxvqa.data.builders.compressed import CompressedVideos
from jaxvqa.data.builders.distorted_photos import DistortedPhotos
from jaxvqa.data.builders.image_sets import Clive, Kadid10k, Koniq10k, LiveIqa
from jaxvqa.data.builders.video_sets import Konvid1k, LiveVqc, Lsvq, YoutubeUgc

BUILDERS: dict[str, type[base.ManualDirBuilder]] = {
    "compressed": CompressedVideos,
    "konvid_1k": Konvid1k,
    "live_vqc": LiveVqc,
    "youtube_ugc": YoutubeUgc,
    "lsvq": Lsvq,
    "koniq_10k": Koniq10k,
    "kadid_10k": Kadid10k,
    "live_iqa": LiveIqa,
    "clive": Clive,
    "distorted_photos": DistortedPhotos,
}


def prepare(
    name: str, manual_dir: str | Path, data_dir: str | Path, **config
) -> base.ManualDirBuilder:
  """Builds data set `name` from `manual_dir` into `data_dir` as ArrayRecord (once) and returns it.

  config: SplitConfig fields (seed, train_fraction, validation_fraction, test_fraction);
  anything else is an error. The prepared copy is reused while the split and the label
  files are unchanged; either change prepares a new copy beside it.
  """
  if name not in BUILDERS:
    raise KeyError(f"unknown data set {name!r}; known: {sorted(BUILDERS)}")
  builder_class = BUILDERS[name]
  known = {field.name for field in dataclasses.fields(SplitConfig)} - {
      field.name for field in dataclasses.fields(tfds.core.BuilderConfig)
  }
  unknown = sorted(set(config) - known)
  if unknown:
    raise TypeError(f"prepare({name!r}): unknown config keys {unknown}; known: {sorted(known)}")
  manual_dir = Path(manual_dir).expanduser()
  split_config = dataclasses.replace(builder_class.BUILDER_CONFIGS[0], **config)
  split_config = dataclasses.replace(
      split_config, name=base.config_name(split_config, builder_class.label_fingerprint(manual_dir))
  )
  data_dir = Path(data_dir).expanduser()
  data_dir.mkdir(parents=True, exist_ok=True)
  # Runs started together (a sweep, the processes of a multi-host job) share one prepared copy:
  # the first prepares it under the lock, the others wait and then find it ready.
  with open(data_dir / f".{builder_class.name}-{split_config.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = builder_class(data_dir=str(data_dir), config=split_config, file_format="array_record")
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    )
  return builder


__all__ = [
    "BUILDERS",
    "prepare",
    "ManualDataMissingError",
    "SplitConfig",
    "CompressedVideos",
    "Konvid1k",
    "LiveVqc",
    "YoutubeUgc",
    "Lsvq",
    "Koniq10k",
    "Kadid10k",
    "LiveIqa",
    "Clive",
    "DistortedPhotos",
]
