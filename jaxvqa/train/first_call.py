"""Seconds of a jitted step's first call: compiling it (or loading it from JAX's persistent
compilation cache) plus running it once.

The trainer's steps are `jax.jit` functions that compile when first called, so the first call is
what a run pays before its first step, and what the compilation cache saves on a resume. Timing
that call to the end of its result (`block_until_ready`) rather than `lower(...).compile()`
measures the program the loop really runs, with the arguments it really gets; what it adds, one
execution of the step, is small beside a compilation.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax


class FirstCallTimer:
  """Wraps `function`; its first call waits for the result and records the seconds it took.

  Later calls pass straight through (asynchronously, as JAX dispatches them). `seconds` is None
  until the first call returns.
  """

  def __init__(self, function: Callable[..., Any]):
    self.function = function
    self.seconds: float | None = None

  def __call__(self, *args, **kwargs):
    if self.seconds is not None:
      return self.function(*args, **kwargs)
    start = time.perf_counter()
    result = jax.block_until_ready(self.function(*args, **kwargs))
    self.seconds = time.perf_counter() - start
    return result
