"""Shipped recipes, discovered from the package folder (no hand-kept registry).

Layout: ``alignkit/recipes/<family>/<task>/<adaptation>[-<variant>].yaml``

* ``task``: the command that runs the file: sft, dpo, orpo or cpt.
* ``adaptation``: how the model is adapted, ``full``, ``lora`` or ``qlora``. The profile picks it
  (``--profile qlora`` reads ``qlora.yaml``, falling back to ``lora.yaml`` since the LoRA hyperparameters
  are shared).
* ``variant``: optional and profile-independent, a second recipe of the same family (constitutional-ai's
  grok SFT, smollm2's smaller models, smollm3's mid-training). ``--recipe FAMILY/VARIANT`` picks the files
  with that suffix (``--recipe constitutional-ai/grok`` reads ``sft/full-grok.yaml``); plain
  ``--recipe FAMILY`` reads the files without one.

So ``alignkit recipes list`` shows one row per recipe name (``FAMILY`` or ``FAMILY/VARIANT``) and task, with
the adaptations it ships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from alignkit.config.tasks import TASKS  # the task folders a recipe may have
from alignkit.errors import ConfigError, Problem, did_you_mean

ADAPTATIONS = ("full", "lora", "qlora")
VARIANT_ORDER = {"full": ("full",), "lora": ("lora", "qlora"), "qlora": ("qlora", "lora")}
_STEM = re.compile(r"^(full|lora|qlora)(?:-([a-z0-9][a-z0-9.]*(?:-[a-z0-9.]+)*))?$")


@dataclass(frozen=True)
class RecipeFile:
    name: str  # the family: the folder under alignkit/recipes
    task: str
    variant: str  # the file's stem, adaptation[-variant] ("full", "full-grok"): copy writes files by it
    text: str

    @property
    def label(self) -> str:
        return f"{self.name}/{self.task}/{self.variant}.yaml"

    @property
    def adaptation(self) -> str | None:
        m = _STEM.match(self.variant)
        return m.group(1) if m else None

    @property
    def flavor(self) -> str | None:
        """The profile-independent variant named after the adaptation (``grok`` of ``full-grok``), or None."""
        m = _STEM.match(self.variant)
        return m.group(2) if m else None

    @property
    def recipe(self) -> str:
        """What --recipe takes to run this file: ``FAMILY`` or ``FAMILY/VARIANT``."""
        return f"{self.name}/{self.flavor}" if self.flavor else self.name

    @property
    def comment(self) -> str:
        """The comment block on top of the file (title, notes and example commands)."""
        lines = []
        for line in self.text.splitlines():
            if not line.startswith("#"):
                break
            lines.append(line[1:].removeprefix(" "))
        return "\n".join(lines).strip()

    @property
    def commands(self) -> list[str]:
        """The example commands: indented comment lines starting with `alignkit ` (prose lines that begin
        with the word alignkit are not commands)."""
        return [c.strip() for c in self.comment.splitlines()
                if c[:1].isspace() and c.strip().startswith("alignkit ")]


def _root():
    return resources.files("alignkit").joinpath("recipes")


def names() -> list[str]:
    """The recipe families (folders)."""
    return sorted(p.name for p in _root().iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def split_name(recipe: str) -> tuple[str, str | None]:
    """``constitutional-ai/grok`` -> ("constitutional-ai", "grok"); ``zephyr-7b-beta`` -> (..., None)."""
    family, _, flavor = recipe.partition("/")
    return family, (flavor or None)


def _family_files(family: str | None) -> list[RecipeFile]:
    out = []
    for n in [family] if family else names():
        base = _root().joinpath(n)
        for task in TASKS:
            tdir = base.joinpath(task)
            if not tdir.is_dir():
                continue
            for f in sorted(tdir.iterdir(), key=lambda p: p.name):
                if f.name.endswith(".yaml"):
                    out.append(RecipeFile(n, task, f.name[:-5], f.read_text(encoding="utf-8")))
    return out


def files(name: str | None = None) -> list[RecipeFile]:
    """Every shipped file; of one family (``NAME``: all its variants), or of one recipe (``NAME/VARIANT``).
    An unknown name is a ConfigError."""
    if not name:
        return _family_files(None)
    check_name(name)
    family, flavor = split_name(name)
    out = _family_files(family)
    return [f for f in out if f.flavor == flavor] if flavor else out


def recipe_names() -> list[str]:
    """Every name --recipe takes: each family that has files without a variant suffix, and FAMILY/VARIANT."""
    return sorted({f.recipe for f in _family_files(None)})


def check_name(name: str) -> None:
    family, flavor = split_name(name)
    known = names()
    if family not in known:
        raise ConfigError(
            Problem("--recipe", f"unknown recipe '{name}'",
                    (did_you_mean(name, recipe_names()) or did_you_mean(family, known) or "")
                    + f" available: {', '.join(recipe_names())}; or pass your own YAML with --config FILE")
        )
    mine = _family_files(family)
    if not any(f.flavor == flavor for f in mine):
        variants = sorted({f.recipe for f in mine})
        what = f"recipe {family} has no variant '{flavor}'" if flavor else f"recipe family {family} has no default"
        raise ConfigError(
            Problem("--recipe", what,
                    (did_you_mean(name, variants) or "") + f" pick one of: {', '.join(variants)}")
        )


def check_task(task: str, where: str = "task") -> None:
    """A task a recipe may name (each has its command: tests/unit/test_task_table.py); unknown ones are refused (exit 2)."""
    if task not in TASKS:
        raise ConfigError(Problem(where, f"unknown task '{task}'", f"use {' or '.join(TASKS)}"))


def find(name: str, task: str, adaptation: str) -> RecipeFile:
    check_name(name)
    family, flavor = split_name(name)
    mine = [f for f in _family_files(family) if f.flavor == flavor]
    available = [f for f in mine if f.task == task]
    if not available:
        raise ConfigError(Problem("--recipe", f"recipe {name} has no {task} step",
                                  f"tasks it has: {', '.join(sorted({f.task for f in mine}))}"
                                  + _elsewhere(family, task)))
    by_adaptation = {f.adaptation: f for f in available}
    for a in VARIANT_ORDER[adaptation]:
        if a in by_adaptation:
            return by_adaptation[a]
    raise ConfigError(
        Problem("--profile", f"recipe {name}/{task} has no variant for {adaptation} training",
                f"variants it ships: {', '.join(sorted(a for a in by_adaptation if a))}; "
                "choose a profile that uses one of them")
    )


def _elsewhere(family: str, task: str) -> str:
    others = sorted({f.recipe for f in _family_files(family) if f.task == task})
    return f"; the family's {task} step: --recipe {' or --recipe '.join(others)}" if others else ""
