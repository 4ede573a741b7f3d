#!/usr/bin/env bash
# One GPU round in one call of at most 10 minutes: checks the Pallas window attention in the whole
# SwinV2 and times both attention paths beside timm, then times 1080p scoring, each step under a
# `timeout` so the whole ends within GPU_ROUND_BUDGET_S seconds (default 545).
#
#   OUT=/some/dir bash benchmarks/gpu_round.sh        # from anywhere; logs and results go to $OUT
#
# Steps, in order of importance (a step gets min(its cap, the time left); under 45 s left, it is
# skipped with a line in summary.txt). GPU_ROUND_STEPS picks which run (default
# "parity throughput score"; "vqa" and "window16" are further ones, run on request):
#   env                   nvidia-smi and versions                              → env.log
#   parity (cap 180 s)    tests/test_pallas_gpu_parity.py: SwinV2-T, pallas against xla,
#                         fp32 and bf16, outputs and gradients, and auto
#                         running the kernel                                  → parity.log
#   throughput (cap 360)  benchmarks/throughput.py, both attention paths and torch.compile'd
#                         timm in one process: backbone inference and train step (no eager timm
#                         and no VQA rows, which would not fit)               → throughput.log,
#                         throughput.json (rewritten after every row: a timeout keeps the rows
#                         done, "complete": false)
#   score (the rest)      benchmarks/score_throughput.py on 12 clips of 1920×1080, 60 frames
#                         (made with ffmpeg while the parity test runs)       → score.log
#   vqa (cap 540)         the VQA training step of configs/default.py with xla and auto in one
#                         process (two compiles of 100–200 s each)            → vqa.log, vqa.json
#   window16 (cap 300)    benchmarks/window_attention.py --window 16: the kernel's forward and its
#                         own (two-kernel) backward against XLA at configs/default.py's window,
#                         which decides `default_backward` for window 16     → window16.log
# summary.txt holds one line per step: exit status (124: its timeout), seconds, limit. The default
# steps write seven files, within the eight a device call brings back; name vqa or window16 in a
# call of their own (or with one other step).
#
# Needs jaxvqa's dependencies importable by $PYTHON (default python3); the repository root is put
# on PYTHONPATH here, so jaxvqa need not be installed. Where the machine lacks some (ml_collections,
# imageio-ffmpeg, ...), unpack them somewhere and put that on PYTHONPATH before calling.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the directory for logs and results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
BUDGET_S="${GPU_ROUND_BUDGET_S:-545}"
PYTHON="${PYTHON:-python3}"
MIN_STEP_S=45
KILL_AFTER_S=5 # a step that ignores SIGTERM is killed this long after its limit
CLIP_DIR="${CLIP_DIR:-${TMPDIR:-/tmp}/jaxvqa_score_bench}" # made here unless present
CLIPS=12
CLIP_FRAMES=60
STEPS=" ${GPU_ROUND_STEPS:-parity throughput score} "
started=$SECONDS

step() { # step NAME CAP_S COMMAND...: runs COMMAND with stdout and stderr in $OUT/NAME.log
  local name=$1 cap=$2
  shift 2
  [[ $STEPS == *" $name "* ]] || return 0
  local left=$((BUDGET_S - (SECONDS - started) - KILL_AFTER_S))
  local limit=$((cap < left ? cap : left))
  if ((limit < MIN_STEP_S)); then
    echo "[$name] skipped: $left s of the budget left" | tee -a "$OUT/summary.txt"
    return
  fi
  echo "[$name] running (limit $limit s): $*" | tee -a "$OUT/summary.txt"
  local step_start=$SECONDS
  timeout -k "$KILL_AFTER_S" "$limit" "$@" >"$OUT/$name.log" 2>&1
  local status=$?
  echo "[$name] exit $status after $((SECONDS - step_start)) s (limit $limit s)" |
    tee -a "$OUT/summary.txt"
}

{
  nvidia-smi
  "$PYTHON" -c 'import jax, jaxlib; print("jax", jax.__version__, "jaxlib", jaxlib.__version__, jax.devices())'
  "$PYTHON" -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__)'
  git log -1 --oneline 2>/dev/null
} >"$OUT/env.log" 2>&1

# The 1080p clips need only CPU cores: made while the parity test compiles and runs.
clips_pid=
if [[ $STEPS == *" score "* ]]; then
  PYTHONPATH="$PWD/benchmarks:$PYTHONPATH" timeout 150 "$PYTHON" -c "import sys; \
from pathlib import Path; import score_throughput as s; \
print(len(s.make_clips(Path(sys.argv[1]), $CLIPS, 1920, 1080, $CLIP_FRAMES)), 'clips')" \
    "$CLIP_DIR" >"$OUT/clips.log" 2>&1 &
  clips_pid=$!
fi

# tests/conftest.py picks the CPU unless JAX_PLATFORMS says otherwise; the CPU stays on for
# steps.on_host. No autotuning: the parity test compiles five SwinV2-T programs that it runs once
# (about 120 s for the first four on an H100, 2026-12-07; auto's bf16 adds about pallas' 22 s).
# `-o addopts=`: one process on the one GPU, and no pytest-xdist needed (pyproject's addopts).
step parity 180 env JAX_PLATFORMS=cuda,cpu XLA_FLAGS=--xla_gpu_autotune_level=0 \
  "$PYTHON" -m pytest -q -s -rs -o addopts= -p no:cacheprovider tests/test_pallas_gpu_parity.py

step throughput 360 "$PYTHON" benchmarks/throughput.py --attention xla,auto \
  --iters 10 --repeats 3 --warmup 2 --skip-eager --skip-vqa --json "$OUT/throughput.json"

if [[ -n $clips_pid ]]; then
  wait "$clips_pid"
  echo "[clips] exit $? (made in the background)" | tee -a "$OUT/summary.txt"
fi
step score 600 "$PYTHON" benchmarks/score_throughput.py --num-clips "$CLIPS" \
  --frames "$CLIP_FRAMES" --clip-dir "$CLIP_DIR"

step vqa 540 "$PYTHON" benchmarks/throughput.py --work none --skip-torch --attention xla,auto \
  --iters 10 --repeats 3 --warmup 2 --json "$OUT/vqa.json"

step window16 300 "$PYTHON" benchmarks/window_attention.py --window 16 --iters 10 --repeats 3

echo "total $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
