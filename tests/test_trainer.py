"""The training loop: device-count invariance, exact resume, non-finite steps, config errors."""

import json
import time

import jax
import numpy as np
import pytest

from jaxvqa import checkpointing, config as config_lib, parallel, steps, trainer
from jaxvqa.data import pipeline


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
    direct = jax.jit(lambda rng: model.init(rng, clip, train=False)["params"])(jax.random.PRNGKey(3))
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
  load = ("import jax, numpy as np; from jaxvqa import checkpointing; "
          f"params, meta = checkpointing.load_params({str(tmp_path / 'd8')!r}, which='latest', ema=False); "
          "print(jax.device_count(), meta['step'], sum(float(np.abs(x).sum()) for x in jax.tree.leaves(params)))")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  result = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, env=env, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  devices, step, total = result.stdout.split()
  assert (devices, step) == ("1", "3")
  np.testing.assert_allclose(float(total), sum(np.abs(x).sum() for x in _leaves(finals[8].params)), rtol=1e-5)


def test_killed_run_resumes_to_the_uninterrupted_parameters(tiny_config, tmp_path):
  uninterrupted = trainer.Trainer(tiny_config, tmp_path / "whole", num_devices=1)
  total = uninterrupted.total_steps
  assert total >= 4
  reference = uninterrupted.train()
  uninterrupted.checkpoints.close()

  first = trainer.Trainer(tiny_config, tmp_path / "split", num_devices=1)
  first.train(stop_after_step=3)  # "killed" after step 3: the last save was at step 2 or 3
  first.checkpoints.close()
  second = trainer.Trainer(tiny_config, tmp_path / "split", num_devices=1)
  resumed = second.train()
  second.checkpoints.close()
  assert int(resumed.step) == total
  _assert_trees_close(reference.params, resumed.params, rtol=1e-5, atol=1e-7)
  _assert_trees_close(reference.ema_params, resumed.ema_params, rtol=1e-5, atol=1e-7)
  _assert_trees_close(reference.opt_state, resumed.opt_state, rtol=1e-5, atol=1e-7)


def test_nonfinite_steps_are_skipped_then_stop_the_run(tiny_config, tmp_path, monkeypatch):
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
  tiny_config.optim.max_consecutive_nonfinite = 2  # steps 3 and 4 of 4 are poisoned
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
      tiny_config, run.model, run.data.frames, run.data.steps_per_epoch, run.mesh)
  batch = next(iter(pipeline.train_loader(
      run.data.splits["train"], run.data.sampler, run.data.frames, seed=0, start_step=0,
      num_steps=1)))
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


@pytest.mark.parametrize("field,value,message", [
    ("data.sampling", "bilinear", "config.data.sampling"),
    ("data.groups_per_batch", 1, "config.data.groups_per_batch"),
    ("model.dtype", "float16", "config.model.dtype"),
    ("loss.contrastive_variant", "triplet", "config.loss.contrastive_variant"),
    ("model.backbone.num_heads", (1, 3, 2, 2), "config.model.backbone.num_heads"),
    ("optim.ema_decay", 1.0, "config.optim.ema_decay"),
])
def test_bad_config_values_name_the_field(tiny_config, field, value, message):
  section, _, name = field.rpartition(".")
  node = tiny_config
  for part in section.split("."):
    node = node[part]
  node[name] = value
  with pytest.raises(config_lib.ConfigError, match=message.replace(".", r"\.")):
    config_lib.validate(tiny_config)


def test_unknown_config_field_is_refused_by_the_flag_parser(tmp_path):
  import subprocess
  import sys
  result = subprocess.run(
      [sys.executable, "train.py", "--config", "configs/demo.py", "--config.data.smapling=x"],
      capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "smapling" in result.stderr


def _tiny_koniq(directory):
  """A KonIQ-10k-shaped release of 12 scikit-image photos with made-up MOS values."""
  import csv

  from PIL import Image

  from jaxvqa.data import sources
  shipped = sources.package_data_dir("skimage", "data")
  names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
           "retina.jpg", "hubble_deep_field.jpg", "ihc.png", "brick.png", "camera.png", "coins.png",
           "grass.png"]
  (directory / "1024x768").mkdir(parents=True)
  with open(directory / "koniq10k_scores_and_distributions.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["image_name", "MOS", "SD", "MOS_zscore"])
    for k, name in enumerate(names):
      Image.open(shipped / name).convert("RGB").resize((48, 36)).save(directory / "1024x768" / f"{k}.png")
      writer.writerow([f"{k}.png", 1.5 + 0.3 * k, 0.5, 30 + 5 * k])
  return directory


def test_iqa_pretraining_hands_its_spatial_modules_to_the_video_model(tiny_config, tmp_path):
  from configs import iqa_pretrain

  iqa = iqa_pretrain.get_config()
  iqa.data.update(tiny_config.data.to_dict(), builder="koniq_10k", demo={**tiny_config.data.demo, "enabled": False},
                  manual_dir=str(_tiny_koniq(tmp_path / "koniq")), num_frames=1,
                  train_fraction=0.5, validation_fraction=0.25)
  iqa.model.update(tiny_config.model.to_dict(), task="iqa")
  iqa.optim, iqa.train = tiny_config.optim, tiny_config.train
  iqa_run = trainer.Trainer(iqa, tmp_path / "iqa", num_devices=1)
  iqa_state = iqa_run.train()
  iqa_run.checkpoints.close()
  assert "temporal_fusion" not in iqa_state.params and "image_head" in iqa_state.params

  tiny_config.init.spatial = str(tmp_path / "iqa")
  video = trainer.Trainer(tiny_config, tmp_path / "video", num_devices=1)
  state = trainer.create_train_state(
      tiny_config, video.model, video.data.frames, video.data.steps_per_epoch, video.mesh)
  handed, _ = checkpointing.load_params(tmp_path / "iqa", which="best")
  for module in ("backbone", "spatial_fusion"):
    _assert_trees_close(handed[module], state.params[module], rtol=0, atol=0)
  fresh = steps.init_params(video.model, video.data.frames, tiny_config.seed)
  assert any(np.abs(a - b).max() > 0 for a, b in zip(_leaves(fresh["backbone"]), _leaves(state.params["backbone"])))


def test_logged_throughput_leaves_out_validation_time(tiny_config, tmp_path, monkeypatch):
  pause = 2.0
  validate = trainer.Trainer._validate

  def slow_validate(self, *args):
    time.sleep(pause)
    return validate(self, *args)

  monkeypatch.setattr(trainer.Trainer, "_validate", slow_validate)
  tiny_config.train.log_every_steps = 2
  run = trainer.Trainer(tiny_config, tmp_path / "run", num_devices=1)
  run.train()
  run.checkpoints.close()
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  rates = {row["step"]: row["videos_per_second"] for row in rows if "videos_per_second" in row}
  # Steps 3-4 follow the validation at step 2; had its pause been counted, their 16 videos
  # would have taken longer than `pause` seconds.
  assert sorted(rates) == [2, 4]
  assert rates[4] > 2 * tiny_config.data.groups_per_batch * tiny_config.data.videos_per_group / pause
