"""Multi-set IQA pre-training (configs/iqa_multiset.py): four fake image sets in their releases'
layouts, batches holding every set, the rank loss inside each set, a run end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import shrink_run
from configs import iqa_multiset
from jaxvqa import config as config_lib
from jaxvqa.train import trainer
from jaxvqa.data import datasets, mixture, pipeline

LIVE_FOLDERS = [("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174)]


def save_image(path, seed):
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 256, (36, 48, 3), np.uint8)
  Image.fromarray(pixels).save(path)


def write_csv(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="") as file:
    csv.writer(file).writerows(rows)


@pytest.fixture(scope="module")
def four_sets(tmp_path_factory):
  """KonIQ-10k, KADID-10k, LIVE IQA and CLIVE in miniature, under one parent directory."""
  root = tmp_path_factory.mktemp("iqa_sets")
  koniq = root / "koniq10k"
  for k in range(8):
    save_image(koniq / "1024x768" / f"{k}.jpg", k)
  write_csv(
      koniq / "koniq10k_scores_and_distributions.csv",
      [["image_name", "MOS"], *[(f"{k}.jpg", 1.2 + 0.5 * k) for k in range(8)]],
  )
  kadid = root / "kadid10k"
  rows = [["dist_img", "ref_img", "dmos", "var"]]
  for ref in range(5):
    for level in range(2):
      name = f"I{ref + 1:02d}_01_{level + 1:02d}.png"
      save_image(kadid / "images" / name, 100 + 2 * ref + level)
      rows.append([name, f"I{ref + 1:02d}.png", 4.5 - 2 * level - 0.1 * ref, 0.2])
  write_csv(kadid / "dmos.csv", rows)
  live = root / "databaserelease2"
  names = [f"{f}/img{k}.bmp" for f, n in LIVE_FOLDERS for k in range(1, n + 1)]
  orgs, dmos = np.ones(982), np.zeros(982)
  refnames = [f"ref{i % 5}.bmp" for i in range(982)]
  for k, i in enumerate([0, 1, 2, 3, 4, 300, 301, 302, 303, 304]):
    orgs[i], dmos[i] = 0, 15.0 + 7.0 * k
    save_image(live / names[i], 200 + k)
  scipy.io.savemat(live / "dmos.mat", {"dmos": dmos[None], "orgs": orgs[None]})
  scipy.io.savemat(live / "refnames_all.mat", {"refnames_all": np.array([refnames], dtype=object)})
  clive = root / "ChallengeDB_release"
  clive_names = [f"t{k}.bmp" for k in range(1, 8)] + [f"{k}.bmp" for k in range(8)]
  for k, name in enumerate(clive_names[7:]):
    save_image(clive / "Images" / name, 300 + k)
  (clive / "Data").mkdir()
  mos = [50.0] * 7 + [20.0 + 8 * k for k in range(8)]
  scipy.io.savemat(clive / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
  scipy.io.savemat(
      clive / "Data" / "AllImages_release.mat",
      {"AllImages_release": np.array([[n] for n in clive_names], dtype=object)},
  )
  return {"koniq_10k": koniq, "kadid_10k": kadid, "live_iqa": live, "clive": clive}


def tiny_multiset(sets, tmp_path):
  config = iqa_multiset.get_config()
  for name, directory in sets.items():
    config.data.mixture[name] = str(directory)
  # Declarative data: a tiny data config, as in test_mos_grouping.py, test_protocols.py and
  # test_reproduce_path.py.
  config.data.update(
      data_dir=str(tmp_path / "tfds"),
      cache_dir=str(tmp_path / "cache"),
      frame_size=32,
      train_fraction=0.6,
      validation_fraction=0.2,
      videos_per_group=2,
      eval_batch_size=8,
      num_workers=0,
  )
  shrink_run(config, epochs=1, checkpoint_every_steps=4)
  config.workdir = str(tmp_path / "run")
  return config


def test_mixed_source_marks_each_part():
  source = mixture.MixedSource(
      [[{"name": "a.jpg", "source": "a", "label": 0.1}], [{"name": b"b.png", "source": b"r1"}] * 2],
      ["koniq10k", "kadid10k"],
  )
  assert len(source) == 3
  assert source[0] == {"name": "koniq10k/a.jpg", "source": "koniq10k/a", "label": 0.1, "group": 0}
  assert [r["group"] for r in source.__getitems__([2, 1, 0])] == [1, 1, 0]
  assert source[2]["source"] == "kadid10k/r1"
  with pytest.raises(IndexError):
    source[3]


def test_mixture_config_refusals(four_sets, tmp_path):
  config = tiny_multiset({"koniq_10k": four_sets["koniq_10k"]}, tmp_path)
  with pytest.raises(config_lib.ConfigError, match=r"^config\.data\.mixture: name at least two"):
    config_lib.validate(config)
  config = tiny_multiset({k: four_sets[k] for k in ("koniq_10k", "clive")}, tmp_path)
  with pytest.raises(
      config_lib.ConfigError, match=r"^config\.data\.groups_per_batch: 4 sets per batch"
  ):
    config_lib.validate(config)
  config.data.groups_per_batch = 2
  config_lib.validate(config)


@pytest.mark.slow
def test_four_sets_pretrain_together(four_sets, tmp_path):
  config = tiny_multiset(four_sets, tmp_path)
  config_lib.validate(config)
  run = datasets.open_run_data(config.data, seed=0)
  batch = next(
      iter(pipeline.train_loader(run.splits["train"], run.sampler, run.frames, seed=0, num_steps=1))
  )
  # Every batch: 2 images of each of the 4 sets, sets marked by group, names by set directory.
  assert sorted(batch["group"].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
  names = {run.splits["train"][int(i)]["name"].split("/")[0] for i in batch["index"]}
  assert names == {"koniq10k", "kadid10k", "databaserelease2", "ChallengeDB_release"}
  assert run.grouping == "set: one group per image set of the mixture (4 sets)"

  trainer.train_and_evaluate(config, config.workdir, num_devices=1)
  logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  steps = [line for line in logged if "loss" in line]
  assert steps and all("loss/plcc" not in line for line in steps)
  assert all(line["loss/rank"] > 0 for line in steps)
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  test_split = sum(len(src) for src in run.splits["test"].parts)  # every set's test share, pooled
  assert results[0]["count"] == test_split
