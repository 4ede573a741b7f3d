"""MOS sets in training: quality-level groups for the coarse stage, the refusal of a group loss
on a set without groups, and a missing file under manual_dir or a converted backbone of another
architecture as one line with exit 2."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import media
from configs import default
from jaxvqa import config as config_lib
from jaxvqa.train import losses
from jaxvqa.data import datasets, grouping, pipeline

REPO = Path(__file__).resolve().parents[1]
MOS = [1.22, 4.64, 2.10, 3.42, 2.75, 3.90, 1.80, 4.20, 3.05, 2.40, 4.01, 1.55]


@pytest.fixture(scope="module")
def konvid_set(tmp_path_factory):
  """A KoNViD-1k-style set of 12 tiny clips in the documented layout."""
  manual = tmp_path_factory.mktemp("KoNViD_1k")
  clip = media.make_clip(manual / "clip.mp4", size=(48, 32), frames=4)
  ids = [str(1000 + k) for k in range(len(MOS))]
  (manual / "KoNViD_1k_videos").mkdir()
  for flickr_id in ids:
    shutil.copyfile(clip, manual / "KoNViD_1k_videos" / f"{flickr_id}.mp4")
  clip.unlink()
  with open(manual / "KoNViD_1k_mos.csv", "w", newline="") as file:
    csv.writer(file).writerows([["flickr_id", "mos"], *zip(ids, MOS)])
  return manual


def konvid_config(manual_dir: Path, tmp_path: Path, **data):
  config = default.get_config()
  # Declarative data: a tiny data config, as in test_iqa_mixture.py and test_reproduce_path.py.
  config.data.update(
      builder="konvid_1k",
      manual_dir=str(manual_dir),
      data_dir=str(tmp_path / "tfds"),
      cache_dir=str(tmp_path / "cache"),
      train_fraction=0.75,
      validation_fraction=0.0,
      num_frames=2,
      frame_size=32,
      num_workers=0,
      **data,
  )
  return config


def test_quantile_groups_are_equal_count_levels_by_rank():
  labels = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4])
  groups = grouping.quantile_groups(labels, 4)
  # Independently: the k-th pair of the sorted labels is level k.
  expected = {0.1: 0, 0.2: 0, 0.3: 1, 0.4: 1, 0.5: 2, 0.7: 2, 0.8: 3, 0.9: 3}
  assert [expected[x] for x in labels] == groups.tolist()
  assert grouping.level_edges(labels, groups) == [0.3, 0.5, 0.8]
  assert np.bincount(grouping.quantile_groups(np.zeros(10), 5)).tolist() == [2] * 5  # ties


def test_group_loss_on_a_mos_set_needs_a_grouping(tmp_path):
  config = konvid_config(tmp_path / "unused", tmp_path)
  assert config.loss.group > 0 and config.data.grouping == "set"
  with pytest.raises(config_lib.ConfigError) as refused:
    config_lib.validate(config)
  message = str(refused.value)
  assert message.startswith("config.loss.group: ") and "\n" not in message
  assert "'konvid_1k' has no bitrate groups" in message and "grouping='mos_quantile'" in message
  config.data.grouping = "mos_quantile"
  config_lib.validate(config)
  config.loss.group, config.data.grouping = 0.0, "set"
  config_lib.validate(config)
  config.data.update(grouping="mos_quantile", quality_levels=3)
  with pytest.raises(config_lib.ConfigError, match=r"^config\.data\.quality_levels: 3 levels"):
    config_lib.validate(config)


def test_mos_quantile_groups_make_the_group_term_non_zero(konvid_set, tmp_path):
  config = konvid_config(konvid_set, tmp_path, grouping="mos_quantile", quality_levels=4)
  config.data.update(groups_per_batch=3, videos_per_group=2)
  run = datasets.open_run_data(config.data, seed=0)
  train_labels = pipeline.read_example_table(run.splits[datasets.TRAIN]).labels
  assert isinstance(run.sampler, pipeline.GroupBatchSampler)
  assert run.grouping.startswith(
      "mos_quantile: 4 equal-count quality levels of the training split of 'konvid_1k'"
  )
  # The levels' boundaries read in the set's MOS: 3 of the published scores, not 0-1 labels.
  edges = run.grouping.split("levels start at ")[1].removesuffix(" in MOS (1-5))").split(", ")
  assert len(edges) == 3 and all(float(edge) in MOS for edge in edges), run.grouping
  batch = next(
      iter(pipeline.train_loader(run.splits["train"], run.sampler, run.frames, seed=0, num_steps=1))
  )
  # Each batch group holds videos of one quality level: labels ordered as the levels.
  by_level = {}
  for level, label in zip(batch["group"], batch["label"]):
    by_level.setdefault(int(level), []).append(float(label))
  assert len(by_level) == 3
  expected = grouping.quantile_groups(train_labels, 4)
  for level, labels in by_level.items():
    assert all(expected[np.flatnonzero(np.isclose(train_labels, x))[0]] == level for x in labels)
  embedding = jax.random.normal(jax.random.key(0), (len(batch["group"]), 8))
  mask = np.ones(len(batch["group"]), bool)
  assert float(losses.group_contrastive_loss(embedding, batch["group"], mask)) > 0.1
  # Without the grouping every record is group 0: the term the issue saw, 0 at every step.
  plain = datasets.open_run_data(konvid_config(konvid_set, tmp_path, grouping="set").data, seed=0)
  plain_batch = next(
      iter(
          pipeline.train_loader(
              plain.splits["train"], plain.sampler, plain.frames, seed=0, num_steps=1
          )
      )
  )
  assert set(plain_batch["group"].tolist()) == {0}
  assert plain.grouping == "set: 'konvid_1k' has no groups (every record is in group 0)"
  plain_mask = np.ones(len(plain_batch["group"]), bool)
  plain_embedding = jax.random.normal(jax.random.key(0), (len(plain_mask), 8))
  assert (
      float(losses.group_contrastive_loss(plain_embedding, plain_batch["group"], plain_mask)) == 0
  )


def test_train_py_names_a_missing_file_under_manual_dir_in_one_line(konvid_set, tmp_path):
  manual = tmp_path / "KoNViD_1k"
  shutil.copytree(konvid_set, manual)
  (manual / "KoNViD_1k_videos" / "1003.mp4").unlink()
  line = _train_py_error_line(manual, tmp_path, "--config.loss.group=0")
  assert line.startswith(f"train.py: config.data.manual_dir='{manual}': ")
  assert "KoNViD_1k_videos/1003.mp4" in line


def test_train_py_names_both_shapes_of_a_backbone_that_does_not_fit_in_one_line(
    konvid_set, tmp_path
):
  from jaxvqa.models import checkpoint_files

  converted = tmp_path / "converted"
  kernel = np.zeros((4, 4, 3, 8), np.float32)  # embed_dim 8; the run below asks for 16
  checkpoint_files.save_converted(
      converted, {"params": {"patch_embed": {"proj": {"kernel": kernel}}}}, {"embed_dim": 8}
  )
  line = _train_py_error_line(
      konvid_set,
      tmp_path,
      "--config.data.num_frames=2",
      "--config.data.frame_size=32",
      "--config.loss.group=0",
      "--config.model.backbone.embed_dim=16",
      "--config.model.backbone.depths=(1,1,1,1)",
      "--config.model.backbone.num_heads=(1,1,2,2)",
      "--config.model.backbone.window_size=4",
      "--config.model.fusion.out_dim=16",
      "--config.model.temporal.width=16",
      f"--config.init.backbone={converted}",
  )
  assert line.startswith(f"train.py: config.init.backbone='{converted}': ")
  assert "(4, 4, 3, 8) in the checkpoint, (4, 4, 3, 16) in the model" in line
  assert line.endswith("its model.json has embed_dim=8; config.model.backbone has embed_dim=16")


def _train_py_error_line(manual, tmp_path, *overrides: str) -> str:
  """train.py's one stderr line for a KoNViD-style run that must stop with exit 2 (no traceback)."""
  result = subprocess.run(
      [
          sys.executable,
          "train.py",
          "--config=configs/default.py",
          "--config.data.builder=konvid_1k",
          f"--config.data.manual_dir={manual}",
          f"--config.data.data_dir={tmp_path / 'tfds'}",
          f"--config.data.cache_dir={tmp_path / 'cache'}",
          *overrides,
          f"--workdir={tmp_path / 'run'}",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 2, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith("train.py:")]
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  return lines[0]
