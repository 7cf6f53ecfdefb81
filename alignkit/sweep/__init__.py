"""Sweeps: a grid over config keys, each point one ordinary alignkit run (see docs/sweep.md).

  grid      --grid options, their expansion into points, a seeded random sample
  manifest  SWEEP_DIR/sweep.yaml, and the rule for a different sweep into the same dir
  runs      the adapter to the run machinery (plan, preflight, claim, spawn, status): the one place to re-point
  plan      every point validated and planned before anything runs
  local     the points one after another on this machine
  slurm     the points as one Slurm job array
  status    where each point stands, from the files
  evaluate  each point's offline eval on its test split (in a process of its own)
  report    the table and the PNGs
"""
