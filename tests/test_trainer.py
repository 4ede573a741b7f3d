"""The training loop: device-count invariance, non-finite steps, config errors, damaged checkpoints,
entry-point errors, TensorBoard. Resuming after a kill: tests/test_resume.py."""

import json
import logging
import re
import sys
import time
import types

import jax
import numpy as np
import pytest

from jaxvqa import config as config_lib
from jaxvqa.train import checkpointing, parallel, run_log, steps, trainer
from jaxvqa.data import pipeline
from conftest import tiny_demo_settings


def _leaves(tree):
  return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(tree))]


def _assert_trees_close(a, b, rtol, atol):
  for left, right in zip(_leaves(a), _leaves(b), strict=True):
    np.testing.assert_allclose(left, right, rtol=rtol, atol=atol)


def _losses(workdir):
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {row["step"]: row["loss"] for row in rows if "loss" in row}


def test_initial_parameters_are_made_on_the_host_and_equal_an_init_on_the_device(tiny_config):
  from jaxvqa.data import video
  from jaxvqa.models import vqa

  model = vqa.build_vqa_model(tiny_config.model)
  frames = video.FrameOptions.from_data_config(tiny_config.data)
  params = steps.init_params(model, frames, seed=3)
  assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(params))
  clip = np.zeros((1, frames.num_frames, frames.size, frames.size, 3), np.uint8)
  with jax.default_device(jax.devices()[-1]):  # another device than the host's first
    direct = jax.jit(lambda rng: model.init(rng, clip, train=False)["params"])(
        jax.random.PRNGKey(3)
    )
  for made, reference in zip(_leaves(params), _leaves(direct), strict=True):
    np.testing.assert_array_equal(made, reference)


def test_one_device_and_eight_devices_train_the_same(tiny_config, tmp_path):
  assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
  finals = {}
  for devices in (1, 8):
    run = trainer.Trainer(tiny_config, tmp_path / f"d{devices}", num_devices=devices)
    finals[devices] = run.train(stop_after_step=3)
    run.checkpoints.close()
  one, eight = _losses(tmp_path / "d1"), _losses(tmp_path / "d8")
  assert sorted(one) == [1, 2, 3]
  np.testing.assert_allclose([one[s] for s in one], [eight[s] for s in one], rtol=1e-4)
  # Adam moves a parameter by about lr·g/|g| whatever |g|, so where a gradient is at rounding level
  # (the zero-initialised SwinV2 post-norms) the all-reduce order shows up element-wise. The fair
  # measure is the whole difference against how far training moved the parameters.
  start = steps.init_params(run.model, run.data.frames, tiny_config.seed)
  flat = lambda tree: np.concatenate([leaf.ravel() for leaf in _leaves(tree)])  # noqa: E731
  moved = np.linalg.norm(flat(finals[1].params) - flat(start))
  assert moved > 1e-3, "training did not move the parameters"
  assert np.linalg.norm(flat(finals[8].params) - flat(finals[1].params)) < 1e-3 * moved

  # Trained on 8 devices, loaded where there is one (a laptop scoring a cluster's run).
  import os
  import subprocess
  import sys

  load = (
      "import jax, numpy as np; from jaxvqa.train import checkpointing; "
      f"params, meta = checkpointing.load_params({str(tmp_path / 'd8')!r}, which='latest', ema=False); "
      "print(jax.device_count(), meta['step'], sum(float(np.abs(x).sum()) for x in jax.tree.leaves(params)))"
  )
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  result = subprocess.run(
      [sys.executable, "-c", load], capture_output=True, text=True, env=env, timeout=120
  )
  assert result.returncode == 0, result.stderr[-2000:]
  devices, step, total = result.stdout.split()
  assert (devices, step) == ("1", "3")
  np.testing.assert_allclose(
      float(total), sum(np.abs(x).sum() for x in _leaves(finals[8].params)), rtol=1e-5
  )


def test_nonfinite_steps_are_skipped_then_stop_the_run(tiny_config, tmp_path, monkeypatch):
  # Set from the start: a resume with another config is refused (steps 3 and 4 of 4 are poisoned).
  tiny_config.optim.max_consecutive_nonfinite = 2
  good = trainer.Trainer(tiny_config, tmp_path / "run", num_devices=1)
  good.train(stop_after_step=2)
  good.checkpoints.close()
  saved_params, _ = checkpointing.load_params(tmp_path / "run", which="latest", ema=False)

  # Poison the data, not the step: the compiled step is shared with the other tests.
  clean_loader = pipeline.train_loader

  def nan_label_loader(*args, **kwargs):
    for batch in clean_loader(*args, **kwargs):
      yield dict(batch, label=np.full_like(batch["label"], np.nan))

  monkeypatch.setattr(pipeline, "train_loader", nan_label_loader)
  broken = trainer.Trainer(tiny_config, tmp_path / "run", num_devices=1)
  with pytest.raises(trainer.NonFiniteTrainingError, match="2 consecutive steps"):
    broken.train()
  broken.checkpoints.close()
  # The skipped steps left the parameters as they were: the saved ones are the good ones.
  latest_params, meta = checkpointing.load_params(tmp_path / "run", which="latest", ema=False)
  assert meta["step"] == 2
  _assert_trees_close(saved_params, latest_params, rtol=0, atol=0)
  assert all(np.isfinite(leaf).all() for leaf in _leaves(latest_params))


def test_train_step_skips_a_nonfinite_update(tiny_config):
  run = trainer.Trainer(tiny_config, tiny_config.workdir, num_devices=1)
  state = trainer.create_train_state(
      tiny_config, run.model, run.data.frames, run.data.steps_per_epoch, run.mesh
  )
  batch = next(
      iter(
          pipeline.train_loader(
              run.data.splits["train"],
              run.data.sampler,
              run.data.frames,
              seed=0,
              start_step=0,
              num_steps=1,
          )
      )
  )
  params = jax.device_get(state.params)  # host copy: the step donates (deletes) the state's buffers
  bad = dict(batch, label=batch["label"].copy())
  bad["label"][3] = np.nan
  skipped, metrics = run.train_step(state, parallel.global_batch(bad, run.mesh))
  assert float(metrics["finite"]) == 0.0 and int(skipped.nonfinite_streak) == 1
  _assert_trees_close(params, skipped.params, rtol=0, atol=0)
  _assert_trees_close(params, skipped.ema_params, rtol=0, atol=0)
  moved, metrics = run.train_step(skipped, parallel.global_batch(batch, run.mesh))
  assert float(metrics["finite"]) == 1.0 and int(moved.nonfinite_streak) == 0
  # The warm-up's first learning rate is 0; the second good step moves the parameters.
  moved, metrics = run.train_step(moved, parallel.global_batch(batch, run.mesh))
  assert np.isfinite(float(metrics["loss"]))
  assert any(np.abs(a - b).max() > 0 for a, b in zip(_leaves(params), _leaves(moved.params)))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("data.sampling", "bilinear", "config.data.sampling"),
        ("data.groups_per_batch", 1, "config.data.groups_per_batch"),
        ("model.dtype", "float16", "config.model.dtype"),
        ("loss.contrastive_variant", "triplet", "config.loss.contrastive_variant"),
        ("model.backbone.num_heads", (1, 3, 2, 2), "config.model.backbone.num_heads"),
        ("optim.ema_decay", 1.0, "config.optim.ema_decay"),
        ("model.statistics_region", 48, "config.model.statistics_region"),
        ("data.fragment_align", 0, "config.data.fragment_align"),
    ],
)
def test_bad_config_values_name_the_field(tiny_config, field, value, message):
  section, _, name = field.rpartition(".")
  node = tiny_config
  for part in section.split("."):
    node = node[part]
  node[name] = value
  with pytest.raises(config_lib.ConfigError, match=message.replace(".", r"\.")):
    config_lib.validate(tiny_config)


def _tiny_koniq(directory):
  """A KonIQ-10k-shaped release of 12 scikit-image photos with made-up MOS values."""
  import csv

  from PIL import Image

  from jaxvqa.data import sources

  shipped = sources.package_data_dir("skimage", "data")
  # Fixture data: skimage's shipped photographs, as test_builders.py lists them.
  names = [
      "astronaut.png",
      "coffee.png",
      "chelsea.png",
      "rocket.jpg",
      "motorcycle_left.png",
      "retina.jpg",
      "hubble_deep_field.jpg",
      "ihc.png",
      "brick.png",
      "camera.png",
      "coins.png",
      "grass.png",
  ]
  (directory / "1024x768").mkdir(parents=True)
  with open(directory / "koniq10k_scores_and_distributions.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["image_name", "MOS", "SD", "MOS_zscore"])
    for k, name in enumerate(names):
      Image.open(shipped / name).convert("RGB").resize((48, 36)).save(
          directory / "1024x768" / f"{k}.png"
      )
      writer.writerow([f"{k}.png", 1.5 + 0.3 * k, 0.5, 30 + 5 * k])
  return directory


def test_iqa_pretraining_hands_its_spatial_modules_to_the_video_model(tiny_config, tmp_path):
  from configs import iqa_pretrain

  iqa = iqa_pretrain.get_config()
  iqa.data.update(
      tiny_config.data.to_dict(),
      builder="koniq_10k",
      demo={**tiny_config.data.demo, "enabled": False},
      manual_dir=str(_tiny_koniq(tmp_path / "koniq")),
      num_frames=1,
      train_fraction=0.5,
      validation_fraction=0.25,
  )
  iqa.model.update(tiny_config.model.to_dict(), task="iqa")
  iqa.optim, iqa.train = tiny_config.optim, tiny_config.train
  iqa_run = trainer.Trainer(iqa, tmp_path / "iqa", num_devices=1)
  iqa_state = iqa_run.train()
  iqa_run.checkpoints.close()
  assert "temporal_fusion" not in iqa_state.params and "image_head" in iqa_state.params

  tiny_config.init.spatial = str(tmp_path / "iqa")
  video = trainer.Trainer(tiny_config, tmp_path / "video", num_devices=1)
  state = trainer.create_train_state(
      tiny_config, video.model, video.data.frames, video.data.steps_per_epoch, video.mesh
  )
  handed, _ = checkpointing.load_params(tmp_path / "iqa", which="best")
  for module in ("backbone", "spatial_fusion"):
    _assert_trees_close(handed[module], state.params[module], rtol=0, atol=0)
  fresh = steps.init_params(video.model, video.data.frames, tiny_config.seed)
  assert any(
      np.abs(a - b).max() > 0
      for a, b in zip(_leaves(fresh["backbone"]), _leaves(state.params["backbone"]))
  )


def _shipped_demo_config(demo_cache, workdir):
  """configs/demo.py (the shipped start) on the tests' tiny demo set: one fragment of the shipped
  model's size (the 64 × 48 clips are upscaled to it), 2 frames, one epoch."""
  from configs import demo as demo_config

  config = demo_config.get_config()
  tiny = tiny_demo_settings(demo_config.get_config("scratch"))
  config.data.demo = tiny.data.demo
  patch = config.data.frame_size // config.data.fragment_grid
  config.data.update(
      cache_dir=str(demo_cache),
      fragment_grid=1,
      frame_size=patch,
      num_frames=2,
      train_fraction=tiny.data.train_fraction,
      validation_fraction=tiny.data.validation_fraction,
  )
  config.optim.update(epochs=1, warmup_epochs=0.5)
  config.train.update(log_every_steps=1, checkpoint_every_steps=2, progress_bar=False)
  config.workdir = str(workdir)
  return config


def test_the_demo_starts_from_every_shipped_weight_and_fine_tunes_them(demo_cache, tmp_path):
  import shutil

  from configs import demo as demo_config
  from jaxvqa.serve import inference

  config = demo_config.get_config()
  card, shipped = inference.read_model_directory()
  # The shipped model's own architecture and fragment size; the grid shrinks to the demo's rows.
  assert config.model.to_dict() == {**card["config"]["model"], "dtype": "float32"}
  data, shipped_data = config.data, card["config"]["data"]
  assert data.frame_size // data.fragment_grid == (
      shipped_data["frame_size"] // shipped_data["fragment_grid"]
  )
  assert data.frame_size <= data.demo.height and data.sampling == "fragments"
  assert (data.num_frames, data.fragment_align) == (
      shipped_data["num_frames"],
      shipped_data["fragment_align"],
  )

  # configs/demo.py starts from the shipped model; here from a copy of it, which is then moved.
  assert config.init.model == "shipped"
  config = _shipped_demo_config(demo_cache, tmp_path / "run")
  config.init.model = str(shutil.copytree(inference.SHIPPED_DIR, tmp_path / "start"))
  run = trainer.Trainer(config, tmp_path / "run", num_devices=1)
  state = trainer.create_train_state(
      config, run.model, run.data.frames, run.data.steps_per_epoch, run.mesh
  )
  _assert_trees_close(shipped, jax.device_get(state.params), rtol=0, atol=0)
  _assert_trees_close(shipped, jax.device_get(state.ema_params), rtol=0, atol=0)
  tuned = run.train()
  assert any(np.abs(a - b).max() > 0 for a, b in zip(_leaves(shipped), _leaves(tuned.params)))
  names = [report.name for report in run.test_reports(tuned)]
  assert names[2].startswith(f"{card['id']} as shipped (no fine-tuning)") and len(names) == 4
  # A starting model moved away after training leaves the other test rows.
  shutil.rmtree(tmp_path / "start")
  names = [report.name for report in run.test_reports(tuned)]
  assert len(names) == 3 and not any("as shipped" in name for name in names)
  run.checkpoints.close()


def test_a_model_that_does_not_fit_the_shipped_weights_is_named(demo_cache, tmp_path):
  config = _shipped_demo_config(demo_cache, tmp_path / "run")
  config.model.head_hidden = 8
  run = trainer.Trainer(config, tmp_path / "run", num_devices=1)
  with pytest.raises(config_lib.ConfigError, match=r"config\.init\.model: the weights of .*head"):
    trainer.create_train_state(
        config, run.model, run.data.frames, run.data.steps_per_epoch, run.mesh
    )
  config.init.spatial = str(tmp_path)
  with pytest.raises(config_lib.ConfigError, match=r"config\.init\.model: replaces every weight"):
    config_lib.validate(config)


def test_logged_throughput_leaves_out_validation_time(tiny_config, tmp_path, monkeypatch, capsys):
  # The validation takes `pause` seconds of a clock the trainer reads (not of the wall), so the
  # test does not depend on how busy the machine is.
  pause, clock_offset = 1000.0, [0.0]
  validate = trainer.Trainer._validate

  def slow_validate(self, *args):
    clock_offset[0] += pause
    return validate(self, *args)

  monkeypatch.setattr(
      trainer,
      "time",
      types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + clock_offset[0]),
  )
  monkeypatch.setattr(trainer.Trainer, "_validate", slow_validate)
  tiny_config.train.log_every_steps = 2
  run = trainer.Trainer(tiny_config, tmp_path / "run", num_devices=1)
  run.train()
  run.checkpoints.close()
  # The first step compiles for 30-60 s at "0/N": a line says so, once.
  assert capsys.readouterr().err.count(trainer.COMPILING_NOTE) == 1
  rows = [
      json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  ]
  rates = {row["step"]: row["videos_per_second"] for row in rows if "videos_per_second" in row}
  # Steps 3-4 follow the validation at step 2; had its pause been counted, their 16 videos
  # would have taken longer than `pause` seconds.
  assert sorted(rates) == [2, 4]
  assert (
      rates[4] > 2 * tiny_config.data.groups_per_batch * tiny_config.data.videos_per_group / pause
  )


def test_first_call_seconds_are_logged_and_a_resumed_run_logs_them_again(
    trained_workdir, demo_cache, tmp_path, capsys
):
  import math
  import shutil

  from configs import demo as demo_config
  from jaxvqa.train import launch

  # Steps 1-2 with a validation at 2 (the session's run, shared with other tests), then a resume
  # as train.py runs it, without the persistent compilation cache (as on any CPU:
  # tests/conftest.py), steps 3-4. In this process, where the programs may already be compiled
  # (no new process to compile them again): the seconds are logged whatever they cost.
  assert launch.enable_compilation_cache() is None
  workdir = tmp_path / "run"
  shutil.copytree(trained_workdir, workdir)
  config = tiny_demo_settings(demo_config.get_config("scratch"))
  config.data.cache_dir = str(demo_cache)
  capsys.readouterr()
  run = trainer.Trainer(config, workdir, num_devices=1)
  run.train()
  run.checkpoints.close()
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  reported = [row for row in rows if any(k.startswith(trainer.FIRST_CALL_PREFIX) for k in row)]
  assert [row["step"] for row in reported] == [2, 4]
  for row in reported:
    for step_name in ("train_step", "eval_step"):
      seconds = row[trainer.FIRST_CALL_PREFIX + step_name]
      assert isinstance(seconds, float) and math.isfinite(seconds) and seconds > 0, row
  line = r"first calls, compilation included: train step [0-9.]+ s, eval step [0-9.]+ s"
  assert len(re.findall(line, capsys.readouterr().err)) == 1


# Damaged checkpoints and entry-point errors: one line naming what is wrong, exit 2.


def _copy_run(finished_run, tmp_path):
  import shutil

  copy = tmp_path / "run"
  shutil.copytree(finished_run, copy)
  return copy


def _newest_save(workdir, kind):
  return max(
      (path for path in (workdir / kind).iterdir() if path.name.isdigit()),
      key=lambda p: int(p.name),
  )


def _data_files(step_dir):
  return sorted((step_dir / "state" / "d").iterdir())


def test_a_missing_data_file_is_named_in_one_line(finished_run, tmp_path):
  workdir = _copy_run(finished_run, tmp_path)
  step_dir = _newest_save(workdir, "best")
  missing = _data_files(step_dir)[0]
  missing.unlink()
  with pytest.raises(checkpointing.CheckpointError) as error:
    checkpointing.load_params(workdir, which="best")
  message = str(error.value)
  assert "\n" not in message
  assert str(step_dir) in message and f"missing data file {missing}" in message


def test_a_truncated_metadata_file_is_named_in_one_line(finished_run, tmp_path):
  workdir = _copy_run(finished_run, tmp_path)
  step_dir = _newest_save(workdir, "checkpoints")
  metadata = step_dir / "state" / "_METADATA"
  metadata.write_bytes(metadata.read_bytes()[:1000])
  with pytest.raises(
      checkpointing.CheckpointError, match=re.escape(f"{metadata} is not valid JSON")
  ):
    checkpointing.load_params(workdir, which="latest")


def test_a_directory_that_is_not_a_run_and_a_bad_which_are_refused(tmp_path):
  with pytest.raises(checkpointing.CheckpointError, match="not a train.py workdir"):
    checkpointing.load_config_dict(tmp_path)
  with pytest.raises(checkpointing.CheckpointError, match="not a train.py workdir"):
    checkpointing.load_params(tmp_path)
  (tmp_path / "config.json").write_text('{"seed": 0, "da')
  with pytest.raises(checkpointing.CheckpointError, match=re.escape(str(tmp_path / "config.json"))):
    checkpointing.load_config_dict(tmp_path)
  with pytest.raises(ValueError, match="which='newest'"):
    checkpointing.load_params(tmp_path, which="newest")


def test_resuming_from_a_damaged_save_names_it(finished_run, tiny_config, tmp_path):
  workdir = _copy_run(finished_run, tmp_path)
  step_dir = workdir / "checkpoints" / "4"
  (step_dir / "meta" / "metadata").unlink()
  run = trainer.Trainer(tiny_config, workdir, num_devices=1)
  with pytest.raises(
      checkpointing.CheckpointError,
      match=re.escape(
          f"checkpoint {step_dir} is damaged: {step_dir / 'meta' / 'metadata'} is missing"
      ),
  ):
    run.train()


def _run_all(commands, timeout=300):
  """Runs the commands side by side (each is mostly Python start-up); [(returncode, stderr)]."""
  import subprocess

  processes = [
      subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for command in commands
  ]
  return [(process.wait(timeout=timeout), process.communicate()[1]) for process in processes]


def _lines(text):
  return [line for line in text.splitlines() if line.strip()]


def test_config_and_checkpoint_errors_give_one_line_and_exit_2(finished_run, tmp_path):
  import sys

  workdir = _copy_run(finished_run, tmp_path)
  step_dir = _newest_save(workdir, "best")
  missing = _data_files(step_dir)[-1]
  missing.unlink()
  python = sys.executable
  cases = {
      "train.py: --config.data.smapling: the config has no field 'smapling' (did you mean 'sampling'?)": [
          python,
          "train.py",
          "--config",
          "configs/demo.py",
          "--config.data.smapling=x",
      ],
      "train.py: --config configs/nonexistent.py: no such config file": [
          python,
          "train.py",
          "--config",
          "configs/nonexistent.py",
      ],
      "train.py: config.data.sampling: must be one of": [
          python,
          "train.py",
          "--config",
          "configs/demo.py",
          "--config.data.sampling=bilinear",
          "--workdir",
          str(tmp_path / "never"),
      ],
      "eval.py: --config.data.smapling: the config has no field 'smapling'": [
          python,
          "eval.py",
          "--workdir",
          str(workdir),
          "--config.data.smapling=x",
      ],
      f"eval.py: checkpoint {step_dir} is damaged: missing data file {missing}": [
          python,
          "eval.py",
          "--workdir",
          str(workdir),
      ],
      f"eval.py: {tmp_path / 'config.json'} not found: {tmp_path} is not a train.py workdir": [
          python,
          "eval.py",
          "--workdir",
          str(tmp_path),
      ],
  }
  for (expected, command), (status, stderr) in zip(
      cases.items(), _run_all(cases.values()), strict=True
  ):
    assert status == 2, (command, stderr[-3000:])
    assert len(_lines(stderr)) == 1 and _lines(stderr)[0].startswith(expected), (
        command,
        stderr[-3000:],
    )


# TensorBoard: learning rate, config, test metrics.


def _events(directory):
  """Every Event in the TFRecord event files of `directory` (length, crc, data, crc per record)."""
  import struct

  from tensorboardX.proto import event_pb2

  for path in sorted(directory.glob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset < len(data):
      (length,) = struct.unpack_from("<Q", data, offset)
      yield event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4


def _scalars(directory):
  return {
      (value.tag, event.step): value.simple_value
      for event in _events(directory)
      for value in event.summary.value
      if value.HasField("simple_value")
  }


def test_tensorboard_holds_learning_rate_config_and_test_metrics(finished_run, tiny_config):
  import math

  scalars = _scalars(finished_run / "tensorboard")
  rates = {step: value for (tag, step), value in scalars.items() if tag == "learning_rate"}
  # optax's warm-up + cosine, written out from the config: 2 steps an epoch, 2 epochs, warm-up
  # 0.5 epoch (1 step) from 0 to the peak, cosine to 0 at step 4; step N's update used rate(N - 1).
  optim, steps_per_epoch = tiny_config.optim, 2
  total, warmup = optim.epochs * steps_per_epoch, round(optim.warmup_epochs * steps_per_epoch)

  def rate(count):
    if count < warmup:
      return optim.learning_rate * count / warmup
    return optim.learning_rate * 0.5 * (1 + math.cos(math.pi * (count - warmup) / (total - warmup)))

  assert sorted(rates) == [1, 2, 3, 4]
  np.testing.assert_allclose(
      [rates[step] for step in (1, 2, 3, 4)],
      [rate(step - 1) for step in (1, 2, 3, 4)],
      rtol=1e-6,
      atol=1e-12,
  )

  texts = [
      value.tensor.string_val[0].decode()
      for event in _events(finished_run / "tensorboard")
      for value in event.summary.value
      if value.tag.startswith("config")
  ]
  assert texts and f"| optim.learning_rate | {optim.learning_rate!r} |" in texts[0]

  results = json.loads((finished_run / "results.json").read_text())
  ema = results[0]
  assert ema["name"].startswith("model (EMA weights)")
  for metric in ("srcc", "plcc", "krcc", "rmse"):
    logged = scalars[(f"test/model_ema_weights_test/{metric}", 4)]
    np.testing.assert_allclose(logged, ema[metric], rtol=1e-6)
  hparams = list(_events(finished_run / "tensorboard" / "hparams"))
  plugin = [
      value.metadata.plugin_data.plugin_name for event in hparams for value in event.summary.value
  ]
  assert "hparams" in plugin
  assert _scalars(finished_run / "tensorboard" / "hparams")[("hparams/srcc", 4)] == pytest.approx(
      ema["srcc"], rel=1e-6
  )


def test_progress_lines_show_even_when_an_import_configured_the_root_logger():
  # TensorFlow (imported by TFDS) puts a WARNING-level handler on the root logger first; the
  # entry points' logging set-up must still let jaxvqa's INFO progress lines through.
  root = logging.getLogger()
  saved_handlers, saved_level = root.handlers[:], root.level
  root.addHandler(logging.StreamHandler())
  root.setLevel(logging.WARNING)
  try:
    run_log.configure_logging()
    run_log.configure_logging()  # the entry points and the trainer may both set it up
    assert logging.getLogger("jaxvqa.kfold.protocol").isEnabledFor(logging.INFO)
    absl = logging.getLogger("absl")
    assert not absl.isEnabledFor(logging.INFO) and len(absl.filters) == 1

    # TFDS's two warnings on every first build of a jaxvqa set say what the builders do by design.
    def passes(message):
      return bool(
          absl.filter(absl.makeRecord("absl", logging.WARNING, "f.py", 1, message, (), None))
      )

    assert not passes("Using custom data configuration: SplitConfig(name='seed0-split60-15-25')")
    assert not passes("Variant folder /c/tfds/x/seed0/1.1.0 has no dataset_info.json")
    assert passes("Some other warning from absl")
  finally:
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def test_closed_event_loop_callbacks_are_dropped_and_other_unraisables_printed(monkeypatch, capsys):
  # The noise a failed Orbax restore leaves (tensorstore callbacks into a closed asyncio loop) is
  # dropped; any other exception Python cannot raise is still printed.
  monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # restored after the test
  run_log.ignore_closed_event_loop_callbacks()

  class RaisesOnDelete:

    def __init__(self, error):
      self.error = error

    def __del__(self):
      raise self.error

  RaisesOnDelete(RuntimeError("Event loop is closed"))
  assert capsys.readouterr().err == ""
  RaisesOnDelete(ValueError("a real problem"))
  err = capsys.readouterr().err
  assert "Exception ignored in" in err and "ValueError: a real problem" in err


def test_a_backbone_of_the_wrong_shape_is_a_config_error_naming_both_shapes(tmp_path):
  import jax.numpy as jnp
  import ml_collections

  from jaxvqa.models import checkpoint_files

  params = {"backbone": {"patch_embed": {"proj": {"kernel": jnp.zeros((4, 4, 3, 16))}}}}
  wrong = {"patch_embed": {"proj": {"kernel": np.zeros((4, 4, 3, 24), np.float32)}}}
  checkpoint_files.save_converted(tmp_path / "converted", {"params": wrong}, {"embed_dim": 24})
  init = ml_collections.ConfigDict(dict(model="", spatial="", backbone=str(tmp_path / "converted")))
  with pytest.raises(
      config_lib.ConfigError,
      match=r"config.init.backbone=.*\(4, 4, 3, 24\) in the checkpoint, \(4, 4, 3, 16\) in the model",
  ):
    trainer.load_initial_weights(params, init)
  # With config.model.backbone, the architecture each side names (model.json's lists as tuples).
  backbone = ml_collections.ConfigDict(dict(embed_dim=16, depths=(1, 1, 1, 1), window_size=4))
  with pytest.raises(config_lib.ConfigError) as refused:
    trainer.load_initial_weights(params, init, backbone)
  assert str(refused.value).endswith(
      ": its model.json has embed_dim=24; config.model.backbone has embed_dim=16"
  )


def test_a_transfer_names_a_reshaped_parameter_before_one_only_a_side_holds():
  """Another depth leaves parameters on one side only; the shape both hold is the telling one."""
  from jaxvqa.models import vqa

  source = {"backbone": {"a": np.zeros((2, 3)), "z_extra": np.zeros(1)}}
  target = {"backbone": {"a": np.zeros((2, 4))}}
  with pytest.raises(ValueError) as refused:
    vqa.transfer_spatial_params(source, target)
  message = str(refused.value)
  assert "2 parameter(s) differ" in message
  assert "first backbone/a: (2, 3) in the checkpoint, (2, 4) in the model" in message
