"""`jaxvqa train` / `jaxvqa eval` after a plain (not editable) install: the wheel's files, installed
with pip into a directory of their own, run from outside the checkout and find the configs shipped
with the package."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from jaxvqa import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
  """`pip install --no-deps --no-build-isolation --target` of a copy of the checkout's package
  files (a copy, so the build's build/ and egg-info never land in the checkout)."""
  root = tmp_path_factory.mktemp("install")
  source = root / "source"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  for name in ("jaxvqa", "configs"):
    shutil.copytree(REPO / name, source / name, ignore=ignore)
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO / name, source / name)
  target = root / "site"
  subprocess.run(
      [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
      + ["--quiet", "--target", str(target), str(source)],
      check=True,
      capture_output=True,
      timeout=120,
  )
  return target


def _run_installed(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
  """Python without site (-S), so neither the checkout nor its editable install is importable:
  only the installed files, then the venv's site-packages for the dependencies."""
  env = dict(os.environ, PYTHONPATH=f"{installed}{os.pathsep}{sysconfig.get_paths()['purelib']}")
  return subprocess.run(
      [sys.executable, "-S", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
  )


def test_installed_train_help_runs_outside_the_checkout(installed, tmp_path):
  result = _run_installed(installed, tmp_path, "-m", "jaxvqa.cli", "train", "--help")
  assert result.returncode == 0, result.stderr
  assert "--config NAME|PATH[:ARG]" in result.stdout
  where = _run_installed(installed, tmp_path, "-c", "import jaxvqa; print(jaxvqa.__file__)")
  assert Path(where.stdout.strip()).is_relative_to(installed), where.stderr


def test_installed_train_resolves_a_bare_name_to_the_shipped_config(installed, tmp_path):
  program = (
      "from jaxvqa.train import launch\n"
      "print(launch.resolve_config('demo:scratch'))\n"
      "config = launch.load_config('demo:scratch', ['--config.train.log_every_steps=7'], 'test')\n"
      "print(config.train.log_every_steps, config.workdir, config.data.demo.enabled)\n"
  )
  result = _run_installed(installed, tmp_path, "-c", program)
  assert result.returncode == 0, result.stderr
  resolved, values = result.stdout.splitlines()[-2:]
  assert resolved == f"{installed / 'configs' / 'demo.py'}:scratch"
  assert values == "7 workdirs/demo True"


def test_installed_train_names_a_bad_field_of_a_shipped_config(installed, tmp_path):
  """demo.py loads from the install (with its `from configs import default`), then the override's
  typo is refused in one line, before anything trains."""
  result = _run_installed(
      installed, tmp_path, "-m", "jaxvqa.cli", "train", "--config", "demo", "--config.trian.x=1"
  )
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      "jaxvqa train: --config.trian.x: the config has no field 'trian' (did you mean 'train'?)"
  ]


def test_an_unknown_config_name_lists_the_shipped_ones(installed, tmp_path):
  result = _run_installed(installed, tmp_path, "-m", "jaxvqa.cli", "train", "--config", "demoo")
  assert result.returncode == 2
  shipped = sorted(p.stem for p in (REPO / "configs").glob("*.py") if not p.stem.startswith("_"))
  assert result.stderr.splitlines() == [
      "jaxvqa train: --config demoo: no such config file, and no shipped config of that name "
      f"(shipped: {', '.join(shipped)})"
  ]


def test_a_config_path_is_taken_as_given(tmp_path, monkeypatch):
  from jaxvqa.train import launch

  own = tmp_path / "mine.py"
  own.write_text("")
  monkeypatch.chdir(tmp_path)
  assert launch.resolve_config("mine.py:arg") == "mine.py:arg"
  assert launch.resolve_config(str(own)) == str(own)


def test_other_commands_still_refuse_unknown_arguments(capsys):
  with pytest.raises(SystemExit) as stopped:
    cli.main(["doctor", "--config.data.x=1"])
  assert stopped.value.code == 2
  assert "unrecognized arguments: --config.data.x=1" in capsys.readouterr().err


def test_eval_overrides_are_checked_against_the_config_schema(capsys):
  from jaxvqa.evaluate import launch

  assert launch.config_overrides(["--config.data.manual_dir=/sets/x"], "t") == {
      "data.manual_dir": "/sets/x"
  }
  with pytest.raises(SystemExit):
    launch.config_overrides(["--config.data.manual_dri=/x"], "jaxvqa eval")
  assert capsys.readouterr().err.startswith("jaxvqa eval: --config.data.manual_dri: the config has")


def test_jaxvqa_eval_on_a_directory_that_is_no_run_is_one_line_and_exit_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as stopped:
    cli.main(["eval", "--workdir", str(tmp_path), "--config.data.manual_dir=/sets/x"])
  assert stopped.value.code == 2
  (line,) = capsys.readouterr().err.splitlines()
  assert line.startswith(
      f"jaxvqa eval: {tmp_path / 'config.json'} not found: {tmp_path} is not a train.py workdir"
  )


def test_jaxvqa_train_hands_the_named_variant_with_its_overrides_to_the_trainer(
    monkeypatch, tmp_path
):
  from jaxvqa.train import trainer

  monkeypatch.setenv("JAXVQA_COMPILATION_CACHE", "off")
  received = {}
  monkeypatch.setattr(
      trainer, "train_and_evaluate", lambda config, workdir: received.update(c=config, w=workdir)
  )
  argv = ["train", "--config", "demo:scratch", "--config.optim.epochs=3", "--workdir", "W"]
  assert cli.main(argv) == 0
  assert received["w"] == "W"
  assert received["c"].optim.epochs == 3
  assert received["c"].init.get("model", "") != "shipped"  # scratch, not the shipped start
  assert cli.main(["train", "--config", "demo", "--workdir", "W"]) == 0
  assert received["c"].init.model == "shipped"


def test_jaxvqa_train_runs_a_protocol_config_as_a_protocol(monkeypatch):
  from jaxvqa.evaluate import protocols

  monkeypatch.setenv("JAXVQA_COMPILATION_CACHE", "off")
  received = {}
  monkeypatch.setattr(
      protocols, "run_protocol", lambda config, workdir: received.update(c=config, w=workdir)
  )
  assert cli.main(["train", "--config", "protocols:youtube_ugc"]) == 0
  assert received["c"].protocol.name == "youtube_ugc"
  assert received["w"] == "workdirs/protocol_youtube_ugc"
