"""The field's standard protocols on the public sets (configs/protocols.py): repeated random splits
within one set, summarised by median and interquartile range, and LSVQ's cross-set table.

Each training is an ordinary run (`trainer.train_and_evaluate`) in a workdir of its own, so a
rerun resumes or reuses it. A split's figure is the test share's SRCC and PLCC of the checkpoint
the validation share picked (EMA weights): FAST-VQA's script reports each split's best test
result, which picks on the test share; picking on validation keeps the test share unseen.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ml_collections
import numpy as np

from jaxvqa import metrics, strict_json

PROTOCOL_FILE = "protocol.json"
# A cross set is scored whole: its two halves (no validation share), each scored with
# evaluate_checkpoint (which needs a few videos a split), pooled.
WHOLE_SET_SPLITS = {"data.train_fraction": 0.5, "data.validation_fraction": 0.0}
EVALUATED_SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Spread:
  """Median and interquartile range of one metric over splits."""

  median: float
  q1: float
  q3: float
  count: int

  def describe(self) -> str:
    return f"{self.median:.3f} (IQR {self.q1:.3f}-{self.q3:.3f})"


def spread(values: list[float]) -> Spread:
  """Median and quartiles (linear interpolation between order statistics, NumPy's default)."""
  array = np.asarray(values, dtype=np.float64)
  q1, median, q3 = np.percentile(array, [25, 50, 75])
  return Spread(float(median), float(q1), float(q3), len(values))


def run_config(config: ml_collections.ConfigDict, **data) -> ml_collections.ConfigDict:
  """One training run's config: the protocol's, without its `protocol` field, `data` set."""
  fields = config.to_dict()
  del fields["protocol"]
  run = ml_collections.ConfigDict(fields)
  run.data.update(data)
  return run


def run_protocol(config: ml_collections.ConfigDict, workdir: str | Path, **train_kwargs) -> dict:
  """Runs the protocol `config.protocol.name` names under `workdir`, prints its table, writes
  WORKDIR/protocol.json and returns what it wrote."""
  from configs import protocols as protocol_configs

  workdir = Path(workdir)
  if config.protocol.name in protocol_configs.CROSS_SET:
    result = _cross_set(config, workdir, **train_kwargs)
  else:
    result = _intra_set(config, workdir, **train_kwargs)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / PROTOCOL_FILE).write_text(strict_json.dumps(result, indent=2) + "\n")
  return result


def _intra_set(config, workdir: Path, **train_kwargs) -> dict:
  from jaxvqa.train import trainer

  protocol = config.protocol
  rows = []
  for seed in range(protocol.first_seed, protocol.first_seed + protocol.splits):
    run = run_config(config, split_seed=seed)
    reports = trainer.train_and_evaluate(run, workdir / f"split_{seed}", **train_kwargs)
    test = reports[0]  # the validation-picked checkpoint's EMA weights on the test share
    rows.append(dict(split_seed=seed, srcc=test.srcc, plcc=test.plcc, count=test.count))
  srcc, plcc = spread([row["srcc"] for row in rows]), spread([row["plcc"] for row in rows])
  print(f"{protocol.name}: {len(rows)} random splits by video, test share of each")
  print(_table(rows, "split_seed"))
  print(f"median over splits: SRCC {srcc.describe()}, PLCC {plcc.describe()}")
  return dict(
      protocol=protocol.name,
      splits=rows,
      srcc=dataclasses.asdict(srcc),
      plcc=dataclasses.asdict(plcc),
  )


def _cross_set(config, workdir: Path, **train_kwargs) -> dict:
  from jaxvqa.evaluate import checkpoint_report
  from jaxvqa.train import trainer

  run_dir = workdir / config.protocol.name
  trainer.train_and_evaluate(run_config(config), run_dir, **train_kwargs)
  devices = {"num_devices": train_kwargs["num_devices"]} if "num_devices" in train_kwargs else {}
  rows = []
  for split in ("test", "test_1080p"):
    result = checkpoint_report.evaluate_checkpoint(
        run_dir, split=split, out_dir=workdir / "eval" / split, **devices
    )
    rows.append(_row(f"{config.protocol.name} {split}", result.report))
  for name, manual_dir in sorted(config.protocol.cross_sets.items()):
    if not manual_dir:
      continue
    overrides = {"data.builder": name, "data.manual_dir": manual_dir, **WHOLE_SET_SPLITS}
    videos = []
    for split in EVALUATED_SPLITS:
      try:
        result = checkpoint_report.evaluate_checkpoint(
            run_dir,
            split=split,
            overrides=overrides,
            out_dir=workdir / "eval" / name / split,
            **devices,
        )
      except ValueError as empty:  # a small set may leave a split empty
        if "empty or absent" not in str(empty):
          raise
        continue
      videos.extend(result.videos)
    report = metrics.evaluate(
        [video["score"] for video in videos], [video["label"] for video in videos], name
    )
    rows.append(_row(f"{name} (every video)", report))
  print(f"trained on {config.protocol.name}'s training split; no fine-tuning on the others")
  print(_table(rows, "set"))
  return dict(protocol=config.protocol.name, sets=rows)


def _row(name: str, report: metrics.QualityReport) -> dict:
  return dict(set=name, srcc=report.srcc, plcc=report.plcc, count=report.count)


def _table(rows: list[dict], key: str) -> str:
  """SRCC, PLCC and the count of each row, one line each."""
  width = max(len(str(row[key])) for row in rows)
  lines = [f"{'':<{width}}  SRCC    PLCC    videos"]
  for row in rows:
    lines.append(f"{row[key]!s:<{width}}  {row['srcc']:.4f}  {row['plcc']:.4f}  {row['count']}")
  return "\n".join(lines)


def read(workdir: str | Path) -> dict:
  """A finished protocol's protocol.json."""
  return json.loads((Path(workdir) / PROTOCOL_FILE).read_text())
