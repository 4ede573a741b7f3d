"""train.py keeps compiled programs in the project's cache on a GPU or TPU, where
JAXVQA_COMPILATION_CACHE says on any device, and nowhere when it says off or on a CPU by default."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROGRAM = """
import jax, jax.numpy as jnp
from jaxvqa.train import launch
print(launch.enable_compilation_cache())
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
print(float(jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(3)).sum()))
"""


def _run(env_overrides: dict[str, str], tmp_path: Path) -> str:
  env = dict(os.environ, JAXVQA_CACHE=str(tmp_path / "cache"))
  for name in ("JAX_COMPILATION_CACHE_DIR", "JAXVQA_COMPILATION_CACHE"):  # tests/conftest.py's
    env.pop(name, None)
  env.update(env_overrides)
  result = subprocess.run(
      [sys.executable, "-c", PROGRAM],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert result.returncode == 0, result.stderr
  return result.stdout.splitlines()[0]


@pytest.mark.parametrize("setting", ["", "elsewhere", "off"])
def test_compiled_programs_land_where_configured(tmp_path, setting):
  overrides = {}
  if setting == "elsewhere":
    overrides["JAXVQA_COMPILATION_CACHE"] = str(tmp_path / "xla_here")
  elif setting == "off":
    overrides["JAXVQA_COMPILATION_CACHE"] = "off"
  printed = _run(overrides, tmp_path)
  default = tmp_path / "cache" / "xla"
  if setting != "elsewhere":  # off, or the default on this CPU
    assert printed == "None" and not default.exists()
    return
  expected = tmp_path / "xla_here"
  assert printed == str(expected)
  assert any(expected.iterdir()), "no compiled program was written"


def test_a_cache_the_process_already_has_is_kept(tmp_path):
  given = tmp_path / "given"
  assert _run({"JAX_COMPILATION_CACHE_DIR": str(given)}, tmp_path) == str(given)
  assert not (tmp_path / "cache" / "xla").exists()
