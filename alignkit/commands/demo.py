"""`alignkit demo`: the embedded tiny SFT -> DPO run on this CPU."""

from __future__ import annotations

from pathlib import Path


def run(output: Path) -> int:
    from alignkit.demo.run import run_demo

    run_demo(output)
    return 0
