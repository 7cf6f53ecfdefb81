"""Snapshot TRL's SFTConfig/DPOConfig/ORPOConfig fields into alignkit/config/trl_fields.json.

ORPOConfig is read where alignkit's trainer reads it (alignkit.train.trl_compat: trl.experimental in TRL 1.16);
`alignkit cpt` trains with SFTConfig, so it has no snapshot of its own.

The CLI validates configs without importing TRL (importing it pulls in torch and takes seconds), so it
validates against this snapshot. tests/unit/test_trl_snapshot.py fails when the installed TRL differs
from the snapshot: run `python scripts/gen_trl_fields.py` after changing the TRL pin and review the diff.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
import typing
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "alignkit" / "config" / "trl_fields.json"

# Fields another config section owns (the value is passed to TRL from there), or that the launcher owns.
OWNED_ELSEWHERE = {
    "model_init_kwargs": "built from the `model` section",
    "trust_remote_code": "model.trust_remote_code",
    "chat_template_path": "data.chat_template",
    "dataset_num_proc": "data.preprocessing_num_workers",
    "deepspeed": "set by the profile (launch)",
    "fsdp": "not supported: use a DeepSpeed profile",
    "fsdp_config": "not supported: use a DeepSpeed profile",
    "parallelism_config": "set by the launcher",
    "local_rank": "set by the launcher",
    "debug": "not a training setting",
    "hub_token": "secrets never go into configs: the Hub token is read from HF_TOKEN in the environment",
}


def _kind(tp) -> tuple[str, list | None]:
    """Map a dataclass annotation to a small type vocabulary the config layer understands."""
    text = str(tp)
    choices = None
    import types

    is_union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    args = typing.get_args(tp) if is_union else ()
    members = args or (tp,)
    for m in members:
        if isinstance(m, type) and issubclass(m, enum.Enum):
            choices = [e.value for e in m]
    names = set()
    for m in members:
        if m is type(None):
            names.add("none")
        elif m is bool:
            names.add("bool")
        elif m is int:
            names.add("int")
        elif m is float:
            names.add("float")
        elif m is str:
            names.add("str")
        elif isinstance(m, type) and issubclass(m, enum.Enum):
            names.add("str")
        elif typing.get_origin(m) is list:
            inner = typing.get_args(m)[0] if typing.get_args(m) else str
            names.add("list[float]" if inner is float else "list[str]")
        elif m is dict or typing.get_origin(m) is dict:
            names.add("dict")
        elif typing.get_origin(m) is typing.Literal:
            names.add("bool")  # Literal[False] in `str | None | Literal[False]`
        else:
            names.add("any")
    if not args and not names:
        names.add("any")
    order = ["bool", "int", "float", "str", "list[str]", "list[float]", "dict", "any", "none"]
    kind = "|".join(n for n in order if n in names)
    if re.search(r"DebugOption|ParallelismConfig", text):
        kind = "any"
    return kind, choices


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        json.dumps(value)
    except TypeError:
        value = str(value)
    return value


def snapshot() -> dict:
    import trl
    from trl import DPOConfig, SFTConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from alignkit.train.trl_compat import orpo

    ORPOConfig, _ = orpo()
    out = {"trl_version": trl.__version__, "owned_elsewhere": OWNED_ELSEWHERE, "tasks": {}}
    for task, cls in (("sft", SFTConfig), ("dpo", DPOConfig), ("orpo", ORPOConfig)):
        hints = typing.get_type_hints(cls)
        fields = {}
        for f in dataclasses.fields(cls):
            if not f.init or f.name.startswith("_") or f.name in OWNED_ELSEWHERE:
                continue
            kind, choices = _kind(hints.get(f.name, f.type))
            help_text = " ".join(str(f.metadata.get("help", "")).split()).replace("%%", "%")
            fields[f.name] = {"type": kind, "default": _default(f), "help": help_text}
            if choices:
                fields[f.name]["choices"] = choices
        out["tasks"][task] = fields
    return out


def main() -> int:
    data = snapshot()
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if "--check" in sys.argv:
        if OUT.exists() and OUT.read_text() == text:
            return 0
        old = json.loads(OUT.read_text()) if OUT.exists() else {"tasks": {}}
        for task, fields in data["tasks"].items():
            before = old.get("tasks", {}).get(task, {})
            changed = sorted(k for k in set(fields) | set(before) if fields.get(k) != before.get(k))
            if changed:
                print(f"{task}: fields differ from the snapshot: {', '.join(changed[:20])}", file=sys.stderr)
        print(f"{OUT.name} does not match the installed trl {data['trl_version']} (snapshot: trl "
              f"{old.get('trl_version')}): run `python scripts/gen_trl_fields.py` and review the diff",
              file=sys.stderr)
        return 1
    OUT.write_text(text)
    print(f"wrote {OUT} (trl {data['trl_version']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
