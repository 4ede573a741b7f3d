"""Test-wide setup: 8 forced CPU devices, so data-parallel code is exercised on CI."""

import fcntl
import os
import shutil
from pathlib import Path

# Must be set before jax is first imported anywhere in the test process. LLVM at -O0: the suite's
# programs are compiled once and run for a few steps, so compiling is most of their time; at -O0
# the K-fold tests took 97 s instead of 148 s, the EfficientNet ones 45 s instead of 61 s
# (2-core CPU, 2026-12-07).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No persistent compilation cache in the test process: JAX 0.10.2 aborted and crashed beside it on
# CI (jaxvqa/train/launch.py `enable_compilation_cache`). tests/test_compilation_cache.py checks
# the cache in processes of its own.
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
os.environ["JAXVQA_COMPILATION_CACHE"] = "off"

import pytest  # noqa: E402


def shrink_run(config, *, epochs: int, checkpoint_every_steps: int):
  """A run at CI size: the ~20k-parameter test model in float32 without drop path, and a short
  schedule logged every step. For `tiny_demo_settings` and the tests that run other configs
  (protocols, the researcher's path, IQA sets); their data blocks stay their own."""
  config.model.backbone.update(
      embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4, drop_path_rate=0.0
  )
  config.model.fusion.update(grid=2, num_heads=2, mlp_dim=8, out_dim=16)
  config.model.temporal.update(width=16, num_heads=2, max_frames=4)
  config.model.update(head_hidden=8, projection_dim=8, dtype="float32")
  config.optim.update(epochs=epochs, warmup_epochs=0.5, learning_rate=1e-3)
  config.train.update(
      log_every_steps=1, checkpoint_every_steps=checkpoint_every_steps, progress_bar=False
  )
  return config


def tiny_demo_settings(config):
  """Shrinks configs/demo.py to test size: 6 sources of 64×48, 12 frames, 4 rungs, a ~20k-param model."""
  demo = config.data.demo
  demo.num_sources, demo.width, demo.height, demo.num_frames = 6, 64, 48, 12
  demo.ladder_kbps = (25.0, 50.0, 100.0, 200.0)
  # Declarative data: a tiny data config, alike in shape to those of test_protocols.py,
  # test_reproduce_path.py and test_iqa_mixture.py.
  config.data.update(
      num_frames=2,
      frame_size=32,
      groups_per_batch=4,
      videos_per_group=2,
      eval_batch_size=8,
      train_fraction=0.5,
      validation_fraction=0.17,
  )
  shrink_run(config, epochs=2, checkpoint_every_steps=2)
  # Drop path stays on here, as in configs/demo.py.
  config.model.backbone.drop_path_rate = 0.1
  return config


def built_once(tmp_path_factory, name: str, build) -> Path:
  """A session directory made by `build(directory)` once for all of this session's pytest-xdist
  workers: the first to ask builds it under a file lock, the others wait and read it. Without
  xdist, a directory of this process. Its readers must not change it."""
  if not os.environ.get("PYTEST_XDIST_WORKER"):
    directory = tmp_path_factory.mktemp(name)
    build(directory)
    return directory
  # Each worker's base is <session>/popen-gwN; the session's directory is theirs in common.
  directory = tmp_path_factory.getbasetemp().parent / name
  with open(directory.with_name(name + ".lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    done = directory / ".built"
    if not done.exists():
      shutil.rmtree(directory, ignore_errors=True)  # a build that failed part way
      directory.mkdir()
      build(directory)
      done.touch()
  return directory


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory):
  """A cache dir holding the tiny demo set (built once per test session, real encodes and VMAF)."""
  from configs import demo as demo_config
  from jaxvqa.data import demo

  settings = tiny_demo_settings(demo_config.get_config("scratch")).data.demo
  return built_once(
      tmp_path_factory, "jaxvqa-cache", lambda cache: demo.ensure_demo_set(settings, cache)
  )


@pytest.fixture
def tiny_config(demo_cache, tmp_path):
  """configs/demo.py at test size, reading the session's tiny demo set; workdir under tmp_path."""
  from configs import demo as demo_config

  config = tiny_demo_settings(demo_config.get_config("scratch"))
  config.data.cache_dir = str(demo_cache)
  config.workdir = str(tmp_path / "run")
  return config


@pytest.fixture(scope="session")
def trained_workdir(demo_cache, tmp_path_factory):
  """configs/demo.py at test size, trained 2 steps (one epoch) on 1 device; the evaluation and
  scoring tests read it (one run for all workers: about 45 s of compiling on the 2-core CI).

  Step 2 ends the first epoch, so the run validates (best checkpoint with its calibration) and
  saves (latest checkpoint), both at step 2.
  """
  from configs import demo as demo_config
  from jaxvqa.train import trainer

  def train(directory):
    config = tiny_demo_settings(demo_config.get_config("scratch"))
    config.data.cache_dir = str(demo_cache)
    run = trainer.Trainer(config, directory / "run", num_devices=1)
    run.train(stop_after_step=2)
    run.checkpoints.close()

  return built_once(tmp_path_factory, "trained", train) / "run"


@pytest.fixture(scope="session")
def finished_run(demo_cache, tmp_path_factory):
  """The tiny demo config trained to the end by train.py's path (train_and_evaluate) on 1 device:
  results.json, TensorBoard events, best and latest checkpoints. The resume tests compare killed
  runs against it; they use the same config, so they share its compiled train step."""
  from configs import demo as demo_config
  from jaxvqa.train import trainer

  config = tiny_demo_settings(demo_config.get_config("scratch"))
  config.data.cache_dir = str(demo_cache)
  workdir = tmp_path_factory.mktemp("finished") / "run"
  trainer.train_and_evaluate(config, workdir, num_devices=1)
  return workdir


def run_cli(argv):
  """(exit status, stdout, stderr) of `jaxvqa ARGV`, in this process."""
  import contextlib
  import io

  from jaxvqa import cli

  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = cli.main(argv)
  return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def half_size_ladder(tmp_path_factory):
  """`make-dataset` of one 64×48 source at scales 1 and 0.5 (one bitrate): a 64×48 encode and a
  32×24 one, which VMAF compared, and training read, upscaled to 64×48 (~1 s)."""
  import media
  from jaxvqa.data import compress

  root = tmp_path_factory.mktemp("ladder")
  media.make_clip(root / "sources" / "bikes.mp4", size=(64, 48), frames=8)
  made = compress.make_dataset(
      root / "sources", root / "out", [100], scales=(1.0, 0.5), progress=False, jobs=2
  )
  assert not made.failures, made.failures
  rows = {(row["encode_width"], row["encode_height"]): row for row in made.rows}
  return {"out": root / "out", "full": rows[(64, 48)], "half": rows[(32, 24)]}
