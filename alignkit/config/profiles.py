"""Launch profiles: accelerate + DeepSpeed configs and the config fields they imply, shipped as data.

A profile is a YAML file in ``alignkit/config/profiles/``. ``--profile`` takes one name or a comma-
separated stack applied left to right (``qlora,cpu``): a *modifier* profile (``cpu``) adapts the one
before it, while two profiles that each choose the adaptation (full / lora / qlora) conflict.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alignkit.config.yamlio import parse_yaml
from alignkit.errors import ConfigError, Problem, did_you_mean


class ProfileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    adaptation: Literal["full", "lora", "qlora"] | None = None
    modifier: bool = Field(False, description="Adapts the profile before it instead of choosing one.")
    cpu: bool = False
    accelerate: dict[str, Any] = Field(default_factory=dict)
    deepspeed: dict[str, Any] | None = None
    config: dict[str, Any] = Field(default_factory=dict)


@dataclass
class ProfileStack:
    names: list[str]
    specs: list[ProfileSpec]
    adaptation: str  # full | lora | qlora
    cpu: bool
    accelerate: dict[str, Any]
    deepspeed: dict[str, Any] | None
    config_layers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return ",".join(self.names)

    @property
    def uses_deepspeed(self) -> bool:
        return self.accelerate.get("distributed_type") == "DEEPSPEED"


def _dir():
    return resources.files("alignkit.config").joinpath("profiles")


def available() -> list[str]:
    return sorted(p.name[:-5] for p in _dir().iterdir() if p.name.endswith(".yaml"))


def load_spec(name: str) -> ProfileSpec:
    names = available()
    if name not in names:
        raise ConfigError(
            Problem("--profile", f"unknown profile '{name}'",
                    (did_you_mean(name, names) or "") + f" available: {', '.join(names)}")
        )
    path = _dir().joinpath(f"{name}.yaml")
    raw = parse_yaml(path.read_text(), f"profile {name}")
    try:
        return ProfileSpec.model_validate(raw)
    except ValidationError as exc:  # a packaging bug, not a user error; still say where
        raise ConfigError(Problem(f"profile {name}", str(exc))) from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_stack(spec: str) -> ProfileStack:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError(Problem("--profile", "no profile given", f"choose from {', '.join(available())}"))
    problems: list[Problem] = []
    specs: list[ProfileSpec] = []
    for n in names:
        try:
            specs.append(load_spec(n))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    choosers = [(n, s) for n, s in zip(names, specs) if s.adaptation]
    if len(choosers) > 1:
        raise ConfigError(
            Problem("--profile", f"profiles {' and '.join(n for n, _ in choosers)} each choose how the model "
                    "is adapted (full / lora / qlora)",
                    f"keep one of them, optionally followed by a modifier such as cpu "
                    f"(e.g. --profile {choosers[-1][0]},cpu)")
        )
    late = [n for i, (n, s) in enumerate(zip(names, specs)) if s.adaptation and any(t.modifier for t in specs[:i])]
    if late:
        order = [n for n, s in zip(names, specs) if not s.modifier] + [n for n, s in zip(names, specs) if s.modifier]
        raise ConfigError(
            Problem("--profile", f"a modifier comes before {late[0]}: modifiers adapt the profile before them",
                    f"put modifiers last: --profile {','.join(order)}")
        )
    if not specs[0].adaptation and not specs[0].modifier:
        raise ConfigError(Problem("--profile", f"profile {names[0]} is incomplete"))
    accelerate: dict[str, Any] = {}
    deepspeed: dict[str, Any] | None = None
    layers = []
    for n, s in zip(names, specs):
        accelerate = deep_merge(accelerate, s.accelerate)
        if s.deepspeed is not None:
            # a modifier tweaks an existing DeepSpeed config; it never turns DeepSpeed on by itself
            if not s.modifier:
                deepspeed = deep_merge(deepspeed or {}, s.deepspeed)
            elif deepspeed is not None:
                deepspeed = deep_merge(deepspeed, s.deepspeed)
        layers.append((n, s.config))
    adaptation = choosers[0][1].adaptation if choosers else "full"
    return ProfileStack(
        names=names,
        specs=specs,
        adaptation=adaptation or "full",
        cpu=any(s.cpu for s in specs),
        accelerate=accelerate,
        deepspeed=deepspeed,
        config_layers=layers,
    )
