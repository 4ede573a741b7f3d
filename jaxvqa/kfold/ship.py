"""The K-fold run's ship variant written as a standalone scorer (the model jaxvqa ships is one)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import ml_collections
import numpy as np

from jaxvqa import strict_json
from jaxvqa.evaluate import calibration
from jaxvqa.serve import inference
from jaxvqa.train import checkpointing, steps
from jaxvqa.data import label_tools, video
from jaxvqa.models import vqa

if TYPE_CHECKING:
  from jaxvqa.kfold.protocol import KFoldRun


def _matching_subtree(tree, shapes):
  """The part of nested dict `tree` with exactly the keys of nested dict `shapes`."""
  if isinstance(shapes, Mapping):
    return {key: _matching_subtree(tree[key], value) for key, value in shapes.items()}
  return tree


def _label_source(config: ml_collections.ConfigDict) -> str:
  manual_dir = config.data.get("manual_dir")
  return label_tools.recorded_label(manual_dir) or label_tools.vmaf_label_source()


def ship_model(run: KFoldRun, states, scores: np.ndarray, out_dir: Path) -> Path | None:
  """Writes the ship variant's extra model (trained without the held-out media) as a standalone
  scorer that `inference.load_shipped_model` reads: params.msgpack (EMA weights, pixel-only
  tree) and model.json (id, config, calibration on its training encodes, provenance)."""
  from flax import serialization

  config = run.config
  index = next(
      (
          i
          for i, spec in enumerate(run.specs)
          if spec.variant == config.kfold.ship_variant and spec.fold == config.kfold.folds
      ),
      None,
  )
  if index is None:
    return None
  spec = run.specs[index]
  if spec.container:
    raise ValueError("config.kfold.ship_variant must be a pixel-only variant (container=False)")
  model_config = config.model.to_dict()
  model_config.update(
      container_features=False,
      detail_features=model_config.get("detail_features", 0) if spec.detail else 0,
      statistics_region=model_config.get("statistics_region", 0) if spec.statistics else 0,
      embedding_in_head=spec.embedding,
      dtype="float32",
  )
  # The stack's tree holds every variant's branches; the shipped scorer has only its own (no
  # container Dense; no detail branch, or no backbone, when its variant does not use it).
  shipped_shapes = steps.param_shapes(
      vqa.build_vqa_model(ml_collections.ConfigDict(model_config)),
      video.FrameOptions(num_frames=config.data.num_frames, size=config.data.frame_size),
  )
  stacked = jax.device_get(jax.tree.map(lambda leaf: leaf[index], states.ema_params))
  # Stored in kfold.ship_weights (bfloat16 halves a backbone's size in the wheel); the scorer
  # reads them back as float32 and computes in float32 wherever it runs (CPU has no fast bf16).
  weights_dtype = jax.numpy.dtype(config.kfold.get("ship_weights", "float32"))
  params = jax.tree.map(
      lambda leaf: np.asarray(leaf, weights_dtype), _matching_subtree(stacked, shipped_shapes)
  )
  train = run.train_sets[spec.fold]
  fitted = calibration.fit_calibration(scores[index][train], run.data.label[train])
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / inference.SHIPPED_PARAMS).write_bytes(serialization.msgpack_serialize(params))
  data = run.data
  card = {
      "id": config.kfold.ship_id,
      "config": {
          "model": model_config,
          "data": {
              "sampling": spec.sampling,
              "num_frames": config.data.num_frames,
              "frame_size": config.data.frame_size,
              "fragment_grid": config.data.fragment_grid,
              "fragment_align": config.data.get("fragment_align", 1),
          },
      },
      "calibration": fitted.to_dict(),
      "weights_dtype": weights_dtype.name,
      checkpointing.DIGEST_KEY: checkpointing.weights_digest(params),
      "training": {
          "variant": spec.variant,
          "pretrain_steps": config.pretrain.steps if spec.pretrain else 0,
          "backbone_start": config.init[spec.start] if spec.start else "random initialisation",
          "finetune_steps": config.optim.steps,
          "families": len(np.unique(data.family[train])),
          "sources": len(np.unique(data.source[train])),
          "encodes": len(train),
          "codecs": sorted(set(data.codec_names)),
          "held_out_media": list(config.kfold.hold_out_media),
          # The ffmpeg/libvmaf that made the data set's labels, as make-dataset recorded them;
          # for a set made before the record, the ones that make-dataset would run here.
          "label": f"{_label_source(config)}, mean over frames",
      },
  }
  (out_dir / inference.SHIPPED_CARD).write_text(strict_json.dumps(card, indent=2))
  return out_dir
