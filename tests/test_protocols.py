"""configs/protocols.py end to end on tiny fake sets in the published layouts: repeated random
splits within KoNViD-1k (median and IQR over splits), and LSVQ's cross-set table (LSVQ test,
test_1080p, every video of KoNViD-1k and LIVE-VQC)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import scipy.stats

import media
from conftest import shrink_run
from configs import protocols as protocol_configs
from jaxvqa.evaluate import protocols


def _tiny(config, manual_dir, tmp_path):
  """The protocol's config at CI size (the tiny model of tests/conftest.py)."""
  # Declarative data: a tiny data config, as in test_reproduce_path.py and test_iqa_mixture.py.
  config.data.update(
      manual_dir=str(manual_dir),
      data_dir=str(tmp_path / "tfds"),
      cache_dir=str(tmp_path / "cache"),
      num_frames=2,
      frame_size=32,
      quality_levels=2,
      groups_per_batch=2,
      videos_per_group=2,
      num_workers=0,
      eval_batch_size=8,
  )
  shrink_run(config, epochs=1, checkpoint_every_steps=100)
  return config


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  directory = tmp_path_factory.mktemp("protocol_clips")
  return [
      media.make_clip(directory / f"c{k}.mp4", size=(48, 32), frames=4, start_frame=30 * k)
      for k in range(5)
  ]


def _konvid(clips, root, count=15):
  manual = root / "KoNViD_1k"
  (manual / "KoNViD_1k_videos").mkdir(parents=True)
  rows = []
  for k in range(count):
    shutil.copyfile(clips[k % len(clips)], manual / "KoNViD_1k_videos" / f"{7000 + k}.mp4")
    rows.append((str(7000 + k), round(1.0 + 4.0 * ((k * 7) % count) / (count - 1), 3)))
  with open(manual / "KoNViD_1k_mos.csv", "w", newline="") as file:
    csv.writer(file).writerows([["flickr_id", "mos"], *rows])
  return manual


def _live_vqc(clips, root, count=6):
  manual = root / "LIVE_VQC"
  (manual / "Video").mkdir(parents=True)
  names = [f"A{k:03d}.mp4" for k in range(count)]
  for k, name in enumerate(names):
    shutil.copyfile(clips[k % len(clips)], manual / "Video" / name)
  mos = [10.0 + 80.0 * ((k * 5) % count) / (count - 1) for k in range(count)]
  scipy.io.savemat(
      manual / "data.mat",
      {"video_list": np.array([[n] for n in names], dtype=object), "mos": np.array(mos)[:, None]},
  )
  return manual


def _youtube_ugc(clips, root, count=15):
  manual = root / "YouTube-UGC"
  rows = []
  for k in range(count):
    vid = f"Vlog_360P-{k:04x}"
    video = manual / "original_videos" / "Vlog" / "360P" / f"{vid}.mkv"
    video.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clips[k % len(clips)], video)  # the decoder reads the container, not the name
    rows.append((vid, "Vlog", 360, round(1.0 + 4.0 * ((k * 4) % count) / (count - 1), 3)))
  with open(manual / "original_videos_MOS_for_YouTube_UGC_dataset.csv", "w", newline="") as file:
    csv.writer(file).writerows([["vid", "category", "resolution", "MOS full"], *rows])
  return manual


def _lsvq(clips, root):
  manual = root / "LSVQ"
  names = [f"ia-batch1/v{k}" for k in range(12)]
  for k, name in enumerate(names):
    (manual / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clips[k % len(clips)], manual / f"{name}.mp4")
  header = ["name", "height", "width", "mos", "frame_number"]
  mos = [20.0 + 60.0 * ((k * 5) % 12) / 11 for k in range(12)]
  rows = [(name, 32, 48, mos[k], 4) for k, name in enumerate(names)]
  with open(manual / "labels_train_test.csv", "w", newline="") as file:
    csv.writer(file).writerows(
        [header + ["is_test"], *[(*row, k >= 6) for k, row in enumerate(rows[:9])]]
    )
  with open(manual / "labels_test_1080p.csv", "w", newline="") as file:
    csv.writer(file).writerows([header, *rows[9:]])
  return manual


def test_spread_is_the_median_and_quartiles_of_the_splits():
  values = [0.61, 0.9, 0.75, 0.8, 0.7, 0.85]
  result = protocols.spread(values)
  q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
  assert (result.median, result.q1, result.q3) == pytest.approx((median, q1, q3))
  assert result.median == pytest.approx(statistics.median(values))


def test_an_unknown_protocol_is_named():
  with pytest.raises(ValueError, match="unknown protocol 'konvid'; known:"):
    protocol_configs.get_config("konvid")


@pytest.mark.slow
def test_intra_set_protocol_runs_every_split_and_reports_their_median(clips, tmp_path, capsys):
  config = _tiny(protocol_configs.get_config("konvid_1k"), _konvid(clips, tmp_path), tmp_path)
  config.protocol.update(splits=2, first_seed=3)
  result = protocols.run_protocol(config, tmp_path / "protocol", num_devices=1)

  assert [row["split_seed"] for row in result["splits"]] == [3, 4]
  for row in result["splits"]:
    # Each split is a run of its own; its row is that run's test report (EMA weights).
    run = tmp_path / "protocol" / f"split_{row['split_seed']}"
    first = json.loads((run / "results.json").read_text())[0]
    assert first["name"].startswith("model (EMA weights), test")
    assert (row["srcc"], row["plcc"], row["count"]) == (first["srcc"], first["plcc"], 3)
    assert json.loads((run / "config.json").read_text())["data"]["split_seed"] == row["split_seed"]
  srcc = [row["srcc"] for row in result["splits"]]
  assert result["srcc"]["median"] == pytest.approx(statistics.median(srcc))
  assert protocols.read(tmp_path / "protocol") == json.loads(json.dumps(result))
  spread = protocols.spread(srcc)
  assert f"median over splits: SRCC {spread.describe()}" in capsys.readouterr().out


@pytest.mark.slow
def test_cross_set_protocol_scores_lsvq_splits_and_other_sets_whole(clips, tmp_path, capsys):
  config = _tiny(protocol_configs.get_config("lsvq"), _lsvq(clips, tmp_path), tmp_path)
  config.protocol.cross_sets.update(
      konvid_1k=str(_konvid(clips, tmp_path, count=12)),
      live_vqc=str(_live_vqc(clips, tmp_path, count=8)),
  )
  result = protocols.run_protocol(config, tmp_path / "protocol", num_devices=1)

  rows = {row["set"]: row for row in result["sets"]}
  assert list(rows) == [
      "lsvq test",
      "lsvq test_1080p",
      "konvid_1k (every video)",
      "live_vqc (every video)",
  ]
  assert [rows[name]["count"] for name in rows] == [3, 3, 12, 8]
  # A whole set's SRCC is scipy's over the union of its splits' written predictions.
  videos = [
      video
      for path in sorted((tmp_path / "protocol" / "eval" / "konvid_1k").glob("*/*.json"))
      for video in json.loads(path.read_text())["videos"]
  ]
  assert len(videos) == 12
  expected = scipy.stats.spearmanr([v["score"] for v in videos], [v["label"] for v in videos])
  assert rows["konvid_1k (every video)"]["srcc"] == pytest.approx(expected.statistic, abs=1e-6)
  # The printed table: the field's four rows, each with the SRCC, PLCC and count written.
  printed = capsys.readouterr().out.splitlines()
  header = printed.index("trained on lsvq's training split; no fine-tuning on the others")
  assert printed[header + 1].split() == ["SRCC", "PLCC", "videos"]
  assert len(printed) >= header + 2 + len(rows)
  for line, (name, row) in zip(printed[header + 2 :], rows.items()):
    assert line.startswith(name)
    assert line[len(name) :].split() == [
        f"{row['srcc']:.4f}",
        f"{row['plcc']:.4f}",
        str(row["count"]),
    ]


# configs/protocols.py's fields that _tiny sets, as the command line spells them.
TINY_OVERRIDES = [
    "--config.data.num_frames=2",
    "--config.data.frame_size=32",
    "--config.data.quality_levels=2",
    "--config.data.groups_per_batch=2",
    "--config.data.videos_per_group=2",
    "--config.data.num_workers=0",
    "--config.data.eval_batch_size=8",
    "--config.model.backbone.embed_dim=8",
    "--config.model.backbone.depths=(1,1,1,1)",
    "--config.model.backbone.num_heads=(1,1,2,2)",
    "--config.model.backbone.window_size=4",
    "--config.model.backbone.drop_path_rate=0.0",
    "--config.model.fusion.grid=2",
    "--config.model.fusion.num_heads=2",
    "--config.model.fusion.mlp_dim=8",
    "--config.model.fusion.out_dim=16",
    "--config.model.temporal.width=16",
    "--config.model.temporal.num_heads=2",
    "--config.model.temporal.max_frames=4",
    "--config.model.head_hidden=8",
    "--config.model.projection_dim=8",
    "--config.model.dtype=float32",
    "--config.optim.epochs=1",
    "--config.optim.warmup_epochs=0.5",
    "--config.optim.learning_rate=1e-3",
    "--config.train.log_every_steps=1",
    "--config.train.checkpoint_every_steps=100",
    "--config.train.progress_bar=False",
]


def test_the_intra_set_protocols_differ_only_in_their_set():
  # So one command run (youtube_ugc's, below) stands for live_vqc's too; each set's reader is
  # checked in tests/test_builders.py.
  def fields(name):
    config = protocol_configs.get_config(name).to_dict()
    assert (config["data"].pop("builder"), config["protocol"].pop("name")) == (name, name)
    assert config.pop("workdir") == f"workdirs/protocol_{name}"
    return config

  reference = fields("konvid_1k")
  for name in protocol_configs.INTRA_SET:
    assert fields(name) == reference, name


@pytest.mark.slow
def test_an_intra_set_protocol_is_one_command_that_prints_its_table(clips, tmp_path):
  """The documented command itself (`jaxvqa train --config protocols:youtube_ugc`), in a process
  of its own with one CPU device, as a user runs it; konvid_1k's splits are checked above."""
  name = "youtube_ugc"
  manual = _youtube_ugc(clips, tmp_path, count=15)
  workdir = tmp_path / "protocol"
  command = [sys.executable, "-m", "jaxvqa.cli", "train", "--config", f"protocols:{name}"]
  command += [
      f"--config.data.manual_dir={manual}",
      f"--config.data.data_dir={tmp_path / 'tfds'}",
      f"--config.data.cache_dir={tmp_path / 'cache'}",
      "--config.protocol.splits=1",
      f"--workdir={workdir}",
      *TINY_OVERRIDES,
  ]
  env = dict(
      os.environ,
      # One device; LLVM at -O0 as in this process (tests/conftest.py): compiling is most of it.
      XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0",
      JAXVQA_COMPILATION_CACHE="off",
  )
  result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]

  written = protocols.read(workdir)
  (row,) = written["splits"]
  assert written["protocol"] == name and row["split_seed"] == 0 and row["count"] == 3
  first = json.loads((workdir / "split_0" / "results.json").read_text())[0]
  assert (row["srcc"], row["plcc"]) == (first["srcc"], first["plcc"])
  lines = result.stdout.splitlines()
  header = lines.index(f"{name}: 1 random splits by video, test share of each")
  assert lines[header + 1].split() == ["SRCC", "PLCC", "videos"]
  assert lines[header + 2].split() == ["0", f"{row['srcc']:.4f}", f"{row['plcc']:.4f}", "3"]
  srcc, plcc = protocols.spread([row["srcc"]]), protocols.spread([row["plcc"]])
  assert lines[header + 3] == (
      f"median over splits: SRCC {srcc.describe()}, PLCC {plcc.describe()}"
  )
