"""TFDS builder for a compressed-video set made by `jaxvqa make-dataset` (VMAF pseudo-labels).

manual_dir is the make-dataset output directory: its manifest.jsonl has one JSON object per
encode (see `jaxvqa.data.compress`). Every encode becomes one example; its bitrate rung is
its group. Splits are by SOURCE content, so all encodes of a source share a split.

Features:
    id            int64        line of manifest.jsonl (0-based)
    name          text         the encode, relative to manual_dir
    video         bytes        the encoded file
    label         float32      mean VMAF against the source (0-100, not rescaled)
    vmaf_frames   float32 [F]  per-frame VMAF
    group         int32        rung: index in the ladder sorted by (scale, kbps); 0 = lowest
    source        text         source id (the split unit)
    codec         text         e.g. libx264
    bitrate_kbps  float32      measured; target_kbps float32 the ladder's target
    width, height, num_frames  int32 (display size: the mezzanine's); fps float32
    scale         float32      resolution factor of the encode (1 = display size)
    encode_width, encode_height  int32  the coded size
    bits_per_pixel float32     bitrate_kbps·1000 / (encode_width·encode_height·fps)

Manifests made before `--scales` existed lack the last four keys; they are read as scale 1,
coded size = display size, and bits per pixel computed from those, which is what they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxvqa.data.builders import base

MANIFEST_KEYS = (
    "source", "source_path", "path", "codec", "rung", "target_kbps", "bitrate_kbps", "vmaf",
    "vmaf_frames", "width", "height", "num_frames", "fps",
)  # required; the resolution-ladder keys below have defaults (see the module docstring)
LADDER_KEYS = ("scale", "encode_width", "encode_height", "bits_per_pixel")


def with_ladder_defaults(record: dict) -> dict:
  """`record` with the resolution-ladder keys of a scale-1 encode filled in where absent."""
  record = dict(record)
  record.setdefault("scale", 1.0)
  record.setdefault("encode_width", record["width"])
  record.setdefault("encode_height", record["height"])
  record.setdefault("bits_per_pixel", float(record["bitrate_kbps"]) * 1000.0 / (
      float(record["encode_width"]) * float(record["encode_height"]) * float(record["fps"])))
  return record


class ManifestError(ValueError):
  """manifest.jsonl has a line that is not a complete make-dataset record."""


def read_manifest(path: Path) -> list[dict]:
  """The records of a make-dataset manifest.jsonl, checked for the keys the builder uses."""
  records = []
  for number, line in enumerate(Path(path).read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as error:
      raise ManifestError(f"{path}:{number}: not JSON ({error.msg})") from None
    absent = [key for key in MANIFEST_KEYS if key not in record]
    if absent:
      raise ManifestError(f"{path}:{number}: keys {absent} missing; re-run make-dataset")
    records.append(with_ladder_defaults(record))
  if not records:
    raise ManifestError(f"{path} holds no encodes; run `jaxvqa make-dataset` again")
  return records


class CompressedVideos(base.ManualDirBuilder):
  """Sources encoded along a bitrate (and resolution) ladder, each labelled with its mean VMAF."""

  name = "jaxvqa_compressed_videos"
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "scale, encode_width, encode_height, bits_per_pixel (--scales)"}
  BUILDER_CONFIGS = [base.SplitConfig(
      name="default", train_fraction=0.7, validation_fraction=0.15, test_fraction=0.15)]
  LABEL_FILES = ("manifest.jsonl",)
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Nothing to download: make the set with\n"
      "  jaxvqa make-dataset --sources SOURCE_DIR --out OUT\n"
      "and pass OUT as manual_dir. It must hold OUT/manifest.jsonl and the encodes it names."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__class__.__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Scalar(dtype=np.int64),
            "name": tfds.features.Text(),
            "video": tfds.features.Tensor(shape=(), dtype=np.object_),
            "label": tfds.features.Scalar(dtype=np.float32),
            "vmaf_frames": tfds.features.Sequence(tfds.features.Scalar(dtype=np.float32)),
            "group": tfds.features.Scalar(dtype=np.int32),
            "source": tfds.features.Text(),
            "codec": tfds.features.Text(),
            "bitrate_kbps": tfds.features.Scalar(dtype=np.float32),
            "target_kbps": tfds.features.Scalar(dtype=np.float32),
            "width": tfds.features.Scalar(dtype=np.int32),
            "height": tfds.features.Scalar(dtype=np.int32),
            "num_frames": tfds.features.Scalar(dtype=np.int32),
            "fps": tfds.features.Scalar(dtype=np.float32),
            "scale": tfds.features.Scalar(dtype=np.float32),
            "encode_width": tfds.features.Scalar(dtype=np.int32),
            "encode_height": tfds.features.Scalar(dtype=np.int32),
            "bits_per_pixel": tfds.features.Scalar(dtype=np.float32),
        }),
    )

  def _split_generators(self, dl_manager):
    manual_dir = Path(dl_manager.manual_dir)
    records = read_manifest(manual_dir / "manifest.jsonl")
    missing = [r["path"] for r in records if not (manual_dir / r["path"]).is_file()]
    if missing:
      raise base.missing_media_error(self.name, manual_dir, missing,
                                     self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    split_of_source = base.split_contents(
        [r["source"] for r in records], self.builder_config.fractions(), self.builder_config.seed)
    splits = [split for split in base.SPLIT_NAMES if split in split_of_source.values()]
    return {
        split: self._generate_examples(manual_dir, [
            (i, r) for i, r in enumerate(records) if split_of_source[r["source"]] == split
        ])
        for split in splits
    }

  def _generate_examples(self, manual_dir: Path, records: list[tuple[int, dict]]):
    for line, record in records:
      yield line, {
          "id": line,
          "name": record["path"],
          "video": (manual_dir / record["path"]).read_bytes(),
          "label": float(record["vmaf"]),
          "vmaf_frames": [float(v) for v in record["vmaf_frames"]],
          "group": int(record["rung"]),
          "source": str(record["source"]),
          "codec": str(record["codec"]),
          "bitrate_kbps": float(record["bitrate_kbps"]),
          "target_kbps": float(record["target_kbps"]),
          "width": int(record["width"]),
          "height": int(record["height"]),
          "num_frames": int(record["num_frames"]),
          "fps": float(record["fps"]),
          "scale": float(record["scale"]),
          "encode_width": int(record["encode_width"]),
          "encode_height": int(record["encode_height"]),
          "bits_per_pixel": float(record["bits_per_pixel"]),
      }
