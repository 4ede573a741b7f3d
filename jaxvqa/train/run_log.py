"""Where a training run reports: a JSON-lines file, TensorBoard, and a progress bar on stderr.

TensorBoard (WORKDIR/tensorboard) holds every logged scalar (losses, learning_rate, validation
metrics), the flattened config as text ("config") and, at the end of train.py, the test metrics as
scalars and an HParams session relating the config to them (tensorboard/hparams/).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
HPARAMS_RUN = "hparams"


def flatten_config(tree: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
  """{"optim": {"learning_rate": 1e-3}} -> {"optim.learning_rate": 1e-3}; other values as text
  (HParams takes only bool, int, float and str)."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten_config(value, f"{name}."))
    else:
      flat[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
  return flat


def _tag(name: str) -> str:
  """A report name ("model (EMA weights), test") as a TensorBoard tag part: model_ema_weights_test."""
  return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _numbers(values: dict[str, Any]) -> dict[str, float]:
  return {
      key: float(value)
      for key, value in values.items()
      if isinstance(value, (int, float)) and not isinstance(value, bool)
  }


EXIT_BAD_RUN = 2  # docs/SCORING.md: 2 is a bad invocation, 1 a bad input file


def exit_with_error(program: str, error: BaseException | str) -> NoReturn:
  """One line on stderr, then exit 2 (train.py, eval.py).

  A bad config or a damaged checkpoint is the user's to fix, not a crash: a traceback would bury
  the one line that says what to fix.
  """
  print(f"{program}: {' '.join(str(error).split())}", file=sys.stderr)
  sys.exit(EXIT_BAD_RUN)


def ignore_closed_event_loop_callbacks() -> None:
  """Keeps a failed Orbax restore to the one line that says what to fix.

  Once a restore fails, Orbax closes its asyncio loop while tensorstore's threads still hold
  callbacks for it; each then raises RuntimeError("Event loop is closed"), which Python prints as
  an unraisable exception (up to 90 lines in CI, around the error line). The other reads of the
  same restore that failed too ("Encountered error while reading array index") are dropped
  likewise: the first was reported. Every other unraisable exception is printed as before. Entry
  points call this.
  """

  def hook(unraisable) -> None:
    error, text = unraisable.exc_value, str(unraisable.exc_value)
    if isinstance(error, RuntimeError) and "Event loop is closed" in text:
      return
    if text.startswith("Encountered error while reading array index"):
      return
    sys.__unraisablehook__(unraisable)

  sys.unraisablehook = hook


def unknown_field_message(error: Exception, argv: list[str], flag: str) -> str:
  """ml_collections' "'smapling' Did you mean "sampling"..." as the override that caused it."""
  text = " ".join(str(error).replace("\\'", "'").replace("\\n", " ").split())
  key = re.search(r'instead of "(\w+)"', text) or re.search(r"(\w+)", text)
  suggestion = re.search(r'Did you mean "(\w+)"', text)
  for arg in argv:
    name = arg.split("=", 1)[0]
    if key and name.startswith(f"--{flag}.") and key.group(1) in name[len(flag) + 3 :].split("."):
      hint = f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
      return f"{name}: the config has no field {key.group(1)!r}{hint}"
  return text


def _flag_argument(argv: list[str], flag: str) -> str:
  """The value given to --flag on the command line ("" if none)."""
  for index, arg in enumerate(argv):
    if arg.startswith(f"--{flag}="):
      return arg.split("=", 1)[1]
    if arg == f"--{flag}" and index + 1 < len(argv):
      return argv[index + 1]
  return ""


def parse_flags_or_exit(
    program: str, config_flag: str = "config", flag_values=None
) -> Callable[[list[str]], list[str]]:
  """An absl `flags_parser` for app.run: flag errors, unknown config fields and a config file that
  cannot be loaded each end the program with one line (exit_with_error) instead of a traceback.
  `flag_values`: the absl FlagValues to parse into (default: absl's global FLAGS)."""
  from absl import flags

  def parse(argv: list[str]) -> list[str]:
    values = flags.FLAGS if flag_values is None else flag_values
    try:
      args = values(argv)
      values[config_flag].value.keys  # noqa: B018 -- a config file that failed to load raises here
      return args
    except flags.Error as error:
      exit_with_error(program, error)
    except (AttributeError, KeyError) as error:
      exit_with_error(program, unknown_field_message(error, argv, config_flag))
    except OSError as error:
      path = _flag_argument(argv, config_flag).split(":", 1)[0]  # a config file may take ":arg"
      if path and not os.path.isfile(path):
        exit_with_error(program, f"--{config_flag} {path}: no such config file (see configs/)")
      exit_with_error(program, f"--{config_flag} {path}: {error}")

  return parse


def configure_logging() -> None:
  """INFO for jaxvqa's own messages on stderr; WARNING for absl's, through which Orbax, Grain and
  TFDS report every save and read at INFO, and for JAX's (train.py and eval.py)."""
  # force: importing TensorFlow (through TFDS) already put a WARNING-level handler on the root
  # logger, which made basicConfig a no-op and hid every progress line.
  logging.basicConfig(
      level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
  )
  absl_logger = logging.getLogger("absl")
  absl_logger.setLevel(logging.WARNING)
  if not any(isinstance(f, _ExpectedDatasetWarnings) for f in absl_logger.filters):
    absl_logger.addFilter(_ExpectedDatasetWarnings())
  logging.getLogger("jax").setLevel(
      logging.WARNING
  )  # "Unable to initialize backend 'tpu'" on every start


class _ExpectedDatasetWarnings(logging.Filter):
  """TFDS warns, on every first build, of what jaxvqa's builders do by design: a split config of
  their own (seed and fractions) and a config folder that has no dataset_info.json until built."""

  EXPECTED = ("Using custom data configuration", "has no dataset_info.json")

  def filter(self, record: logging.LogRecord) -> bool:
    return not any(text in record.getMessage() for text in self.EXPECTED)


def _logged_step(line: str) -> float:
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return math.inf  # a line cut short by a kill


def drop_lines_after(path: Path, step: int) -> None:
  """Removes the lines of steps after `step` (and torn lines) from the metrics file at `path`.

  A run killed after its last save had logged steps that its resumed run trains, and logs, again;
  without this each would appear twice.
  """
  if not path.is_file():
    return
  lines = path.read_text().splitlines(keepends=True)
  kept = [line for line in lines if line.endswith("\n") and _logged_step(line) <= step]
  if len(kept) < len(lines):
    partial = path.with_name(path.name + ".tmp")
    partial.write_text("".join(kept))
    os.replace(partial, path)


class RunLog:
  """Context manager; only the chief process (`enabled`) writes anything."""

  def __init__(
      self,
      workdir: str | Path,
      *,
      enabled: bool,
      total_steps: int,
      initial_step: int = 0,
      show_progress: bool = True,
  ):
    self.enabled = enabled
    self.workdir = Path(workdir)
    self._file = None
    self._writer = None
    self._bar = None
    if not enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    drop_lines_after(self.workdir / METRICS_FILE, initial_step)
    self._file = (self.workdir / METRICS_FILE).open("a")
    from tensorboardX import SummaryWriter  # imported here: only the chief needs it

    self._writer = SummaryWriter(str(self.workdir / "tensorboard"))
    self._bar = tqdm(
        total=total_steps,
        initial=initial_step,
        desc="train",
        unit="step",
        disable=not show_progress,
        dynamic_ncols=True,
    )

  def write(
      self, step: int, values: dict[str, float], progress: dict[str, float] | None = None
  ) -> None:
    if not self.enabled:
      return
    clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
    self._file.write(json.dumps({"step": step, **clean}) + "\n")
    self._file.flush()
    for key, value in values.items():
      if math.isfinite(value):
        self._writer.add_scalar(key, value, step)
    if progress:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in progress.items()}, refresh=False)

  def write_config(self, step: int, config: dict[str, Any]) -> None:
    """The flattened config as a TensorBoard text table (Text tab), one row per field."""
    if not self.enabled:
      return
    rows = "\n".join(f"| {name} | {value!r} |" for name, value in flatten_config(config).items())
    self._writer.add_text("config", f"| field | value |\n| --- | --- |\n{rows}", step)

  def write_text(self, step: int, tag: str, text: str) -> None:
    """A line of text in TensorBoard's Text tab under `tag`."""
    if self.enabled:
      self._writer.add_text(tag, text, step)

  def write_test_reports(self, step: int, reports: Iterable[Any], config: dict[str, Any]) -> None:
    """Each report's metrics as `test/<report>/<metric>` scalars, and an HParams session holding
    the flattened config with the first report's metrics as `hparams/<metric>`."""
    if not self.enabled:
      return
    reports = list(reports)
    for report in reports:
      values = _numbers(report.to_dict())
      self.write(step, {f"test/{_tag(report.name)}/{key}": value for key, value in values.items()})
    if reports:
      headline = _numbers(reports[0].to_dict())
      self._writer.add_hparams(
          flatten_config(config),
          {f"hparams/{key}": value for key, value in headline.items() if math.isfinite(value)},
          name=HPARAMS_RUN,
          global_step=step,
      )

  def note(self, message: str) -> None:
    """One line on stderr above the progress bar (chief only)."""
    if self.enabled:
      tqdm.write(message, file=sys.stderr)

  def advance(self) -> None:
    if self.enabled:
      self._bar.update(1)

  def __enter__(self) -> "RunLog":
    return self

  def __exit__(self, *exc) -> None:
    if not self.enabled:
      return
    self._bar.close()
    self._writer.close()
    self._file.close()


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT stopped training after a save; rerunning the same command resumes."""

  def __init__(self, step: int, signum: int):
    self.step, self.signum = step, signum
    super().__init__(
        f"{signal.Signals(signum).name}: interrupted at step {step}, saved; rerun the "
        "same command to resume"
    )
