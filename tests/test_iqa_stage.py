"""The IQA stage made in memory: its crops carry MS-SSIM labels that fall with the level, its
batches pair crops of one photo, and a short run starts from the given backbone and writes one."""

import numpy as np
import pytest

from configs import distill as distill_config
from jaxvqa.config import ConfigError
from jaxvqa.data import iqa_set, ms_ssim
from jaxvqa.distill import crops, iqa_stage


def _tiny_config():
  from configs import demo
  from conftest import tiny_demo_settings

  config = distill_config.get_config("cpu")
  config.model = tiny_demo_settings(demo.get_config("scratch")).model  # a ~20k-parameter SwinV2
  config.data.update(crop_size=32, jobs=1, held_out_fraction=0.3)
  config.iqa.update(
      steps=4,
      batch_size=4,
      photos_per_batch=2,
      reference_size=ms_ssim.MIN_SIDE,
      levels=3,
      crops_per_image=2,
      distortions="gaussian_blur,white_noise",
      warmup_steps=1,
  )
  config.train.update(log_every_steps=2, checkpoint_every_steps=4)
  return config


@pytest.fixture(scope="module")
def photos():
  colour = [p for p in crops.package_photos() if p.stem in ("chelsea", "coffee", "astronaut")]
  assert len(colour) == 3
  return colour


def test_the_bank_labels_each_crop_with_its_image_ms_ssim(photos):
  config = _tiny_config()
  bank = iqa_stage.build_bank(photos[:2], config.iqa, 32, 0.5, seed=0, jobs=1)
  versions = 1 + 2 * 3  # the reference and 2 distortions × 3 levels
  assert bank["crops"].shape == (2 * versions * 2, 32, 32, 3)
  assert bank["held_out"].sum() == versions * 2  # one of the two photos
  # Recompute one photo's labels independently: MS-SSIM of each whole version.
  data = photos[0].read_bytes()
  reference = iqa_set.pristine_reference(data, ms_ssim.MIN_SIDE)
  settings = iqa_set.Settings(
      size=ms_ssim.MIN_SIDE, levels=3, distortions=("gaussian_blur", "white_noise")
  )
  ref_id = iqa_set.reference_id(photos[0], data)
  expected = [1.0] + [
      ms_ssim.ms_ssim(reference, image)
      for *_, image in iqa_set.distorted_versions(reference, ref_id, settings)
  ]
  first = bank["label"][bank["photo"] == 0][::2]
  np.testing.assert_allclose(first, expected, atol=1e-4)
  # Within a distortion the label falls with the level.
  assert (np.diff(first[1:4]) < 0).all() and (np.diff(first[4:7]) < 0).all()
  # The crops of a version are cut at the same places as the reference's.
  clean, blurred = bank["crops"][bank["photo"] == 0][[0, 2]]
  assert np.abs(clean.astype(int) - blurred.astype(int)).mean() < 40


def test_batches_hold_equal_shares_of_training_photos(photos):
  config = _tiny_config()
  bank = iqa_stage.build_bank(photos, config.iqa, 32, 0.3, seed=0, jobs=1)
  train = np.unique(bank["photo"][~bank["held_out"]])
  rows = iqa_stage._batch_rows(bank, train, config.iqa, 0, step=3)
  counts = np.bincount(bank["photo"][rows], minlength=3)
  assert sorted(counts[counts > 0]) == [2, 2]
  assert not bank["held_out"][rows].any()
  np.testing.assert_array_equal(rows, iqa_stage._batch_rows(bank, train, config.iqa, 0, step=3))


def test_a_short_run_starts_from_the_backbone_and_writes_its_own(photos, tmp_path):
  import jax

  from jaxvqa.models import checkpoint_files, vqa

  config = _tiny_config()
  model = vqa.build_iqa_model(config.model)
  # Jitted: one compile, where an eager init compiles each of its ops.
  variables = jax.jit(model.init)(jax.random.PRNGKey(5), np.zeros((1, 32, 32, 3), np.float32))
  params = variables["params"]
  start = jax.tree.map(np.asarray, params["backbone"])
  report = iqa_stage.run_iqa_stage(config, tmp_path, photos, start)
  assert set(report) == {
      "iqa/held_out_srcc",
      "iqa/held_out_plcc",
      "iqa/held_out_within_photo_srcc",
  }
  assert all(np.isfinite(v) for v in report.values())
  written, _ = checkpoint_files.load_converted(tmp_path / iqa_stage.BACKBONE_DIR)
  moved = jax.tree.map(
      lambda a, b: float(np.abs(np.asarray(a) - b).max()), written["params"], start
  )
  assert 0 < max(jax.tree.leaves(moved)) < 1.0  # trained a little, from that start
  log = [line for line in (tmp_path / iqa_stage.LOG_FILE).read_text().splitlines() if line]
  assert len(log) == 3  # steps 2 and 4, and the held-out report at step 4
  # A rerun resumes at the end and changes nothing.
  again = iqa_stage.run_iqa_stage(config, tmp_path, photos, start)
  assert again == pytest.approx(report)


def test_bad_iqa_fields_are_named():
  config = _tiny_config()
  config.iqa.distortions = "gaussian_blur,smudge"
  with pytest.raises(ConfigError, match=r"config.iqa.distortions: unknown \['smudge'\]"):
    iqa_stage.validate_config(config.iqa, 32)
  config = _tiny_config()
  config.iqa.reference_size = 100
  with pytest.raises(ConfigError, match="config.iqa.reference_size"):
    iqa_stage.validate_config(config.iqa, 32)


def test_the_distillation_checks_the_iqa_stage_before_it_starts():
  from jaxvqa.distill import loop

  config = _tiny_config()
  config.iqa.photos_per_batch = 3  # the batch of 4 is no multiple of it
  with pytest.raises(ConfigError, match="config.iqa.batch_size: must be a multiple"):
    loop.validate_config(config)
  config.iqa.steps = 0  # the stage is off: nothing of it is checked
  loop.validate_config(config)
