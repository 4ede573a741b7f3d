r"""Trains configs/default.py and its loss ablations on one data set and tabulates held-out results.

  python benchmarks/ablations.py --manual-dir /data/compressed --root workdirs/ablations \
      [--epochs 30] [--concurrent 4] [--override --config.model.fusion.token_norm=True ...]

Runs `train.py` once per row (default, no_group, no_rank, plcc_only) with the same data, split
and seed, `--concurrent` of them at a time on the one accelerator (each gets an equal share of its
memory), then prints a Markdown table: held-out PLCC/SRCC/KRCC/RMSE of the best EMA weights, the
bits-per-pixel baseline on the same split, and the training throughput (videos/s, median of the
logged intervals). This is how the table of docs/results/HISTORY.md
(`configs/default.py` on a larger made set) was made.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = {
    "default": ["--config", "configs/default.py"],
    "no_group": ["--config", "configs/ablations.py:no_group"],
    "no_rank": ["--config", "configs/ablations.py:no_rank"],
    "plcc_only": ["--config", "configs/ablations.py:plcc_only"],
}


def _command(name: str, args) -> list[str]:
  return [
      sys.executable,
      str(REPO / "train.py"),
      *ROWS[name],
      f"--workdir={args.root / name}",
      f"--config.data.manual_dir={args.manual_dir}",
      f"--config.optim.epochs={args.epochs}",
      "--config.train.progress_bar=False",
      *args.override,
  ]


def _throughput(workdir: Path) -> float:
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  rates = [row["videos_per_second"] for row in rows if "videos_per_second" in row]
  return statistics.median(rates[1:] or rates) if rates else float("nan")  # first holds compiling


def _row(name: str, workdir: Path) -> dict:
  results = {entry["name"]: entry for entry in json.loads((workdir / "results.json").read_text())}
  model = next(entry for key, entry in results.items() if key.startswith("model (EMA"))
  baseline = next(
      (entry for key, entry in results.items() if key.startswith("bits-per-pixel")), None
  )
  return {
      "name": name,
      "model": model,
      "baseline": baseline,
      "videos_per_second": _throughput(workdir),
  }


def format_markdown(rows: list[dict]) -> str:
  lines = [
      "| run | count | PLCC | SRCC | KRCC | RMSE | train videos/s |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for row in rows:
    m = row["model"]
    lines.append(
        f"| {row['name']} | {m['count']} | {m['plcc']:.4f} | {m['srcc']:.4f} | "
        f"{m['krcc']:.4f} | {m['rmse']:.2f} | {row['videos_per_second']:.1f} |"
    )
  baseline = rows[0]["baseline"] if rows else None
  if baseline:
    lines.append(
        f"| bits-per-pixel linear baseline | {baseline['count']} | {baseline['plcc']:.4f} | "
        f"{baseline['srcc']:.4f} | {baseline['krcc']:.4f} | {baseline['rmse']:.2f} | – |"
    )
  return "\n".join(lines)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
      "--manual-dir", type=Path, required=True, help="a `jaxvqa make-dataset --out` directory"
  )
  parser.add_argument(
      "--root", type=Path, required=True, help="one workdir per row is made under it"
  )
  parser.add_argument("--epochs", type=float, default=30)
  parser.add_argument(
      "--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}"
  )
  parser.add_argument("--concurrent", type=int, default=1, help="runs at a time on the accelerator")
  parser.add_argument("--markdown", type=Path, help="also write the table here")
  parser.add_argument(
      "--override",
      nargs=argparse.REMAINDER,
      default=[],
      help="further --config.field=value flags passed to every run (put last)",
  )
  args = parser.parse_args()
  names = args.rows.split(",")
  unknown = sorted(set(names) - set(ROWS))
  if unknown:
    parser.error(f"unknown rows {unknown}; known: {list(ROWS)}")
  args.root.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.9 / max(1, args.concurrent):.2f}")
  pending, running, failed = list(names), {}, []
  started = time.perf_counter()
  while pending or running:
    while pending and len(running) < args.concurrent:
      name = pending.pop(0)
      log = open(args.root / f"{name}.log", "w")
      running[name] = (
          subprocess.Popen(
              _command(name, args), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
          ),
          log,
      )
      print(f"[{time.perf_counter() - started:6.0f}s] started {name}", flush=True)
    time.sleep(2)
    for name, (process, log) in list(running.items()):
      if process.poll() is not None:
        log.close()
        del running[name]
        status = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
        print(
            f"[{time.perf_counter() - started:6.0f}s] {name} {status}; log {args.root / name}.log",
            flush=True,
        )
        if process.returncode:
          failed.append(name)
  rows = [_row(name, args.root / name) for name in names if name not in failed]
  table = format_markdown(rows)
  print(table)
  if args.markdown:
    args.markdown.write_text(table + "\n")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
