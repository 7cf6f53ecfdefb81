"""Shipped recipes, discovered from the package folder (no hand-kept registry).

Layout: ``alignkit/recipes/<name>/<task>/<variant>.yaml`` where variant is how the model is adapted:
``full``, ``lora`` or ``qlora``. A profile picks the variant (``--profile qlora`` reads ``qlora.yaml``,
falling back to ``lora.yaml`` since the LoRA hyperparameters are shared).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from alignkit.errors import ConfigError, Problem, did_you_mean

TASKS = ("sft", "dpo")
VARIANT_ORDER = {"full": ("full",), "lora": ("lora", "qlora"), "qlora": ("qlora", "lora")}


@dataclass(frozen=True)
class RecipeFile:
    name: str
    task: str
    variant: str
    text: str

    @property
    def label(self) -> str:
        return f"{self.name}/{self.task}/{self.variant}.yaml"

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
    return sorted(p.name for p in _root().iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def files(name: str | None = None) -> list[RecipeFile]:
    out = []
    for n in [name] if name else names():
        base = _root().joinpath(n)
        for task in TASKS:
            tdir = base.joinpath(task)
            if not tdir.is_dir():
                continue
            for f in sorted(tdir.iterdir(), key=lambda p: p.name):
                if f.name.endswith(".yaml"):
                    out.append(RecipeFile(n, task, f.name[:-5], f.read_text(encoding="utf-8")))
    return out


def check_name(name: str) -> None:
    known = names()
    if name not in known:
        raise ConfigError(
            Problem("--recipe", f"unknown recipe '{name}'",
                    (did_you_mean(name, known) or "") + f" available: {', '.join(known)}; "
                    "or pass your own YAML with --config FILE")
        )


def find(name: str, task: str, adaptation: str) -> RecipeFile:
    check_name(name)
    available = [f for f in files(name) if f.task == task]
    if not available:
        raise ConfigError(Problem("--recipe", f"recipe {name} has no {task} step",
                                  f"tasks it has: {', '.join(sorted({f.task for f in files(name)}))}"))
    by_variant = {f.variant: f for f in available}
    for variant in VARIANT_ORDER[adaptation]:
        if variant in by_variant:
            return by_variant[variant]
    raise ConfigError(
        Problem("--profile", f"recipe {name}/{task} has no variant for {adaptation} training",
                f"variants it ships: {', '.join(sorted(by_variant))}; choose a profile that uses one of them")
    )
