"""benchmarks/throughput.py's bookkeeping of the attention paths, without timing anything: row
names, ratios, which paths run where, the --attention option. Its rows themselves are checked by
running `--smoke` on a CPU (benchmarks/README.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import throughput  # noqa: E402


def row(name: str, frames_per_second: float | None) -> throughput.Row:
  seconds = [] if frames_per_second is None else [64 / frames_per_second]
  return throughput.Row(name, 64, seconds_per_iteration=seconds)


def test_ratios_per_attention_path_against_compiled_timm_and_pallas_over_xla():
  rows = {
      r.name: r
      for r in [
          row("jax backbone infer [xla]", 1100.0),
          row("jax backbone infer [pallas]", 1380.0),
          row("jax backbone train [xla]", 2900.0),
          row("jax backbone train [pallas]", None),  # failed: no ratio, not a crash
          row("timm compiled infer", 1000.0),
          row("timm compiled train", 2000.0),
          row("jax vqa train [xla]", 400.0),
          row("jax vqa train [pallas]", 500.0),
      ]
  }
  ratios = throughput.ratios(rows, "timm", ("xla", "pallas"))
  assert ratios["jax[xla]/timm-compiled infer"] == pytest.approx(1.10)
  assert ratios["jax[pallas]/timm-compiled infer"] == pytest.approx(1.38)
  assert ratios["jax[xla]/timm-compiled train"] == pytest.approx(1.45)
  assert ratios["jax[pallas]/timm-compiled train"] is None
  assert ratios["jax[xla]/timm-eager infer"] is None  # no eager row
  assert ratios["pallas/xla infer"] == pytest.approx(1380 / 1100)
  assert ratios["pallas/xla train"] is None
  assert ratios["pallas/xla vqa train"] == pytest.approx(1.25)
  assert not any(key.startswith("pallas/xla") for key in throughput.ratios(rows, "timm", ("xla",)))


def test_pallas_rows_are_skipped_off_gpu_with_one_line_unless_smoke(capsys):
  assert throughput.runnable_attention(("xla", "pallas"), "gpu", smoke=False) == ("xla", "pallas")
  assert capsys.readouterr().out == ""
  assert throughput.runnable_attention(("xla", "pallas"), "cpu", smoke=False) == ("xla",)
  printed = capsys.readouterr().out.splitlines()
  assert len(printed) == 1 and printed[0].startswith("[pallas] skipped:") and "cpu" in printed[0]
  assert throughput.runnable_attention(("pallas", "xla"), "cpu", smoke=True) == ("pallas", "xla")
  assert "interpreter" in capsys.readouterr().out


def test_attention_option_and_sizes_per_path():
  assert throughput.parse_args([]).attention == ("xla", "pallas")
  assert throughput.parse_args(["--attention", "pallas"]).attention == ("pallas",)
  for bad in ("xla,triton", "xla,xla", ","):
    with pytest.raises(SystemExit):
      throughput.parse_args(["--attention", bad])
  sizes = throughput.Sizes.smoke(batch=2)
  pallas = sizes.with_attention("pallas")
  assert pallas.backbone["attention_impl"] == "pallas"
  assert pallas.vqa_config.model.backbone.attention_impl == "pallas"
  assert "attention_impl" not in sizes.backbone  # the original is left as it was
  assert sizes.vqa_config.model.backbone.get("attention_impl") != "pallas"
  assert throughput.jax_row_name("vqa train", "xla") == "jax vqa train [xla]"
  assert throughput.jax_row_name("infer", "pallas") == "jax backbone infer [pallas]"


def test_skip_jax_times_no_jax_row(tmp_path, capsys):
  # --skip-jax leaves JAX off the timed work (the torch rows alone, JAX_PLATFORMS=cpu keeping it
  # off the GPU): no ceiling, backbone or VQA row of its own.
  result_path = tmp_path / "result.json"
  throughput.main(["--smoke", "--skip-jax", "--skip-torch", "--json", str(result_path)])
  result = json.loads(result_path.read_text())
  assert result["complete"] and result["rows"] == [] and result["ceilings"] == {}
  assert "jax runs on" not in capsys.readouterr().err
