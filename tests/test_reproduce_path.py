"""docs/REPRODUCE.md's path on fake sets in the documented layouts, with a model small enough for
CI: convert a timm >= 0.9 checkpoint, pre-train the spatial half on a KonIQ-10k-style set, train
the video model from it on a KoNViD-1k-style set with quality-level groups, evaluate."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

import media
from conftest import shrink_run
from configs import default, iqa_pretrain
from jaxvqa.evaluate import checkpoint_report
from jaxvqa.train import trainer
from test_convert import _cli, timm_state
from test_swinv2 import randomized_hf_model

pytestmark = pytest.mark.slow


def tiny(config, manual_dir, tmp_path, workdir):
  """The config at CI size (the model of tests/conftest.py's tiny demo), on `manual_dir`."""
  # Declarative data: a tiny data config, as in test_protocols.py and test_iqa_mixture.py.
  config.data.update(
      manual_dir=str(manual_dir),
      data_dir=str(tmp_path / "tfds"),
      cache_dir=str(tmp_path / "cache"),
      frame_size=32,
      train_fraction=0.6,
      validation_fraction=0.2,
      num_workers=0,
      eval_batch_size=8,
  )
  shrink_run(config, epochs=2, checkpoint_every_steps=4)
  config.workdir = str(workdir)
  return config


def test_convert_then_iqa_pretrain_then_vqa_train_then_evaluate(tmp_path):
  # 1. A timm >= 0.9 checkpoint (no position tables) of the tiny backbone, converted.
  model = randomized_hf_model(
      32, 32, embed_dim=8, depths=[1] * 4, num_heads=[1, 1, 2, 2], window_size=4
  )
  checkpoint = tmp_path / "tiny_timm.safetensors"
  save_file(timm_state(model, downsample_at_start=True, with_buffers=False), str(checkpoint))
  weights = tmp_path / "weights"
  argv = ["convert-weights", str(checkpoint), "--out", str(weights), "--window-size", "4"]
  assert _cli(argv) == 0

  # 2. IQA pre-training on a KonIQ-10k-style set, from the converted backbone.
  koniq = tmp_path / "koniq10k"
  rng = np.random.default_rng(0)
  rows = []
  for k in range(15):
    (koniq / "1024x768").mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (36, 48, 3), np.uint8)
    Image.fromarray(pixels).save(koniq / "1024x768" / f"{k}.jpg")
    rows.append((f"{k}.jpg", 1.0 + 4.0 * k / 14))
  with open(koniq / "koniq10k_scores_and_distributions.csv", "w", newline="") as file:
    csv.writer(file).writerows([["image_name", "MOS"], *rows])
  iqa = tiny(iqa_pretrain.get_config(), koniq, tmp_path, tmp_path / "iqa")
  iqa.data.update(groups_per_batch=2, videos_per_group=2)
  iqa.init.backbone = str(weights)
  trainer.train_and_evaluate(iqa, iqa.workdir, num_devices=1)
  assert (tmp_path / "iqa" / "results.json").is_file()

  # 3. VQA training on a KoNViD-1k-style set from the IQA run's spatial half, quality-level groups.
  konvid = tmp_path / "KoNViD_1k"
  (konvid / "KoNViD_1k_videos").mkdir(parents=True)
  clips = [
      media.make_clip(tmp_path / f"c{k}.mp4", size=(48, 32), frames=4, start_frame=30 * k)
      for k in range(4)
  ]
  mos_rows = []
  for k in range(20):
    shutil.copyfile(clips[k % 4], konvid / "KoNViD_1k_videos" / f"{5000 + k}.mp4")
    mos_rows.append((str(5000 + k), round(1.0 + 4.0 * ((k * 7) % 20) / 19, 3)))
  with open(konvid / "KoNViD_1k_mos.csv", "w", newline="") as file:
    csv.writer(file).writerows([["flickr_id", "mos"], *mos_rows])
  vqa = tiny(default.get_config(), konvid, tmp_path, tmp_path / "vqa")
  vqa.data.update(builder="konvid_1k", num_frames=2, grouping="mos_quantile", quality_levels=4)
  vqa.init.spatial = str(tmp_path / "iqa")
  trainer.train_and_evaluate(vqa, vqa.workdir, num_devices=1)

  lines = [
      json.loads(line) for line in (tmp_path / "vqa" / "metrics.jsonl").read_text().splitlines()
  ]
  group_terms = [line["loss/group"] for line in lines if "loss/group" in line]
  assert group_terms and all(value > 0 for value in group_terms)
  grouping_line = (tmp_path / "vqa" / trainer.GROUPING_FILE).read_text()
  assert grouping_line.startswith(
      "mos_quantile: 4 equal-count quality levels of the training split of 'konvid_1k'"
  )

  # 4. Evaluation of the test split (eval.py's function).
  result = checkpoint_report.evaluate_checkpoint(tmp_path / "vqa", split="test", num_devices=1)
  assert result.report.count == 4
  assert result.json_path.is_file()
