"""Holds each case of the reliability battery (tests/reliability_battery.py, issue 30's bad inputs
against the real CLI) to its exit status and to a first line that names the problem."""

import reliability_battery


def test_every_bad_input_of_the_battery_exits_as_documented_naming_its_problem(tmp_path):
  outcomes = reliability_battery.run_battery(tmp_path)
  assert len(outcomes) >= 11
  missed = [
      f"{outcome.case.name}: exit {outcome.status}, {outcome.problem!r}"
      for outcome in outcomes
      if not outcome.held
  ]
  assert missed == []
  # Nothing a problem line says is a traceback's last line.
  assert not [o for o in outcomes if o.problem and o.problem.startswith(("Traceback", "  File"))]
