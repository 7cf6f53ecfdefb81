"""`alignkit recipes list|show|copy` and `alignkit config fields|schema`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from alignkit import ui
from alignkit.commands import options
from alignkit.config import recipes
from alignkit.config.tasks import check_task_option
from alignkit.errors import ConfigError, Problem, UsageError


def list_recipes(as_json: bool) -> None:
    rows = []
    for name in recipes.names():
        fs = recipes.files(name)
        for recipe in sorted({f.recipe for f in fs}, key=lambda r: (r != name, r)):  # the family's default first
            for task in recipes.TASKS:
                tf = [f for f in fs if f.recipe == recipe and f.task == task]
                if tf:
                    rows.append({"name": recipe, "family": name, "task": task,
                                 "variants": [f.adaptation for f in tf], "files": [f.label for f in tf],
                                 "description": _description(tf[0])})
    if as_json:
        ui.print_json(rows)
        return
    from rich.table import Table

    t = Table(title="recipes", title_justify="left")
    for col in ("recipe", "task", "variants", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["task"], ", ".join(r["variants"]), r["description"])
    ui.out_console().print(t)
    ui.out_console().print("Run one: alignkit sft --recipe NAME --profile full|lora|qlora|cpu  "
                           "(show it: alignkit recipes show NAME --task sft); NAME may be FAMILY/VARIANT, "
                           "e.g. constitutional-ai/grok")


def _description(f: recipes.RecipeFile) -> str:
    from alignkit.config.yamlio import parse_yaml

    data = parse_yaml(f.text, f.label) or {}
    return str(data.get("description") or f.comment.splitlines()[0] if f.comment else "")


def show(name: str, *, task: str, profile: str | None, raw: bool, explain: bool = False) -> None:
    from alignkit.config.resolve import resolve_config
    from alignkit.config.run import section_model

    check_task_option(task)
    if raw:
        from alignkit.config.profiles import load_stack

        stack = load_stack(profile or "full")
        ui.print_out(recipes.find(name, task, stack.adaptation).text)
        return
    r = resolve_config(task, recipe=name, profile=profile)
    d = r.to_dict()
    lines = [f"# {name} / {task} / profile {r.profile.name}   (recipe file: {r.recipe_file})",
             "# each value: the layer it came from; unset TRL fields keep TRL's defaults"]
    for key in ("task", "recipe", "profile", "description"):
        if key in d:
            lines.append(f"{key}: {_scalar(d[key])}")
    for section in ("model", "lora", "data", "train", "launch"):
        lines.append(f"{section}:")
        model_fields = section_model(task, section).model_fields
        for k, v in d[section].items():
            if explain and model_fields.get(k) is not None and model_fields[k].description:
                lines.append(f"  # {' '.join(model_fields[k].description.split())}")
            src = r.provenance.get((section, k), "default")
            rendered = _render_value(v, indent=4)
            pad = f"  {k}: {rendered}"
            lines.append(f"{pad:<60} # {src}" if "\n" not in rendered else f"  {k}:  # {src}\n{rendered}")
    ui.print_out("\n".join(lines))
    from rich.markup import escape

    for n in r.notes:
        ui.info(f"translated: {escape(n)}")


def _scalar(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _render_value(v: Any, indent: int) -> str:
    if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
        pad = " " * indent
        return "\n".join(f"{pad}- {_scalar({k: x for k, x in item.items() if x is not None})}" for item in v)
    return _scalar(v)


def copy(name: str, dest: Path) -> None:
    recipes.check_name(name)
    fs = recipes.files(name)
    if dest.exists() and not dest.is_dir():
        raise UsageError(Problem(str(dest), "is a file", "give a directory"))
    written = []
    for f in fs:
        target = dest / f.task / f"{f.variant}.yaml"
        if target.exists():
            raise UsageError(Problem(str(target), "already exists", "choose an empty directory"))
    for f in fs:
        target = dest / f.task / f"{f.variant}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(f.text, encoding="utf-8")
        shutil.move(str(tmp), target)
        written.append(str(target))
    for w in written:
        ui.print_out(w)
    from rich.markup import escape

    first = fs[0]
    ui.info(escape(f"edit them, then: alignkit {first.task} --config {dest}/{first.task}/{first.variant}.yaml "
                   "--profile ..."))


def fields(task: str, section: str | None, search: str | None) -> None:
    from alignkit.config.run import SECTIONS, section_model

    check_task_option(task)
    if section and section not in SECTIONS:
        raise ConfigError(Problem("section", f"unknown section '{section}'", f"use one of {', '.join(SECTIONS)}"))
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"{task} config keys", title_justify="left", show_lines=False)
    t.add_column("key", no_wrap=True)  # whole, to copy as --key=value
    for col in ("type", "default", "description"):
        t.add_column(col, overflow="fold")
    for s in [section] if section else SECTIONS:
        model = section_model(task, s)
        for name, f in model.model_fields.items():
            key = f"{s}.{name}"
            if search and search not in key:
                continue
            default = "required" if f.is_required() else _scalar(f.get_default(call_default_factory=True))
            t.add_row(key, _type_name(f.annotation), default, Text(describe(f.description or "")))
    ui.out_console().print(t)


def describe(text: str, limit: int = 300) -> str:
    """A field description for the terminal: Markdown links as ``text (url)`` (rich markup would eat the
    ``[text]``), cut at a word boundary, so that a URL is shown whole or not at all."""
    import re

    text = " ".join(re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r"\1 (\2)", text).split())
    if len(text) <= limit:
        return text
    return text[: text.rfind(" ", 0, limit)].rstrip(" ,;:") + " …"


def _type_name(annotation: Any) -> str:
    import re

    text = str(annotation).replace("typing.", "")
    for noise in ("<class '", "'>", "Annotated[", "NoneType"):
        text = text.replace(noise, "" if noise != "NoneType" else "None")
    # Literal['auto', 'accelerate'] -> auto|accelerate: the choices, as they are typed
    text = re.sub(r"Literal\[([^\]]*)\]", lambda m: "|".join(v.strip(" '\"") for v in m.group(1).split(",")), text)
    return text[:40]


def schema(task: str) -> None:
    from alignkit.config.run import run_model

    check_task_option(task)
    ui.print_json(run_model(task).model_json_schema())


# --------------------------------------------------------------------------- the commands

recipes_app = typer.Typer(help="The shipped recipes: list, show resolved, copy to edit.", no_args_is_help=True)
config_app = typer.Typer(help="The config schema: every key, its type, default and meaning.", no_args_is_help=True)
_Task = Annotated[str, typer.Option("--task", "-t", help="sft, dpo, orpo or cpt.")]


@recipes_app.command("list")
def recipes_list(as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """Table of recipes: name, task, variants, what each is."""
    list_recipes(as_json=as_json)


@recipes_app.command("show")
def recipes_show(
    name: Annotated[str, typer.Argument(help="Recipe: FAMILY or FAMILY/VARIANT (see `alignkit recipes list`).")],
    task: _Task = "sft",
    profile: options.Profile = None,
    raw: Annotated[bool, typer.Option("--raw", help="The shipped file as is, with its comments.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="A comment line with each key's description.")] = False,
) -> None:
    """The resolved config of a recipe, each value with the layer it came from."""
    show(name, task=task, profile=profile, raw=raw, explain=explain)


@recipes_app.command("copy")
def recipes_copy(
    name: Annotated[str, typer.Argument(
        help="FAMILY (all its files, every variant) or FAMILY/VARIANT (that variant's files).")],
    dest: Annotated[Path, typer.Argument(help="Directory to copy the recipe's YAML files into.")],
) -> None:
    """Copy a recipe's YAML files to edit them, then run with --config."""
    copy(name, dest)


@config_app.command("fields")
def config_fields(
    task: _Task = "sft",
    section: Annotated[Optional[str], typer.Argument(
        help="model | lora | data | train | launch (default: all).")] = None,
    search: Annotated[Optional[str], typer.Option("--search", "-s", help="Only keys containing this text.")] = None,
) -> None:
    """Every config key with type, default and description."""
    fields(task, section, search)


@config_app.command("schema")
def config_schema(task: _Task = "sft") -> None:
    """The JSON schema of a run config (for editors and CI)."""
    schema(task)


def register(app: typer.Typer) -> None:
    app.add_typer(recipes_app, name="recipes")
    app.add_typer(config_app, name="config")
