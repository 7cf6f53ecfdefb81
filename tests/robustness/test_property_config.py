"""Property: whatever YAML document and override strings a user gives, the config loader either accepts
them or raises ConfigError (exit 2 with the key and the fix) — never anything else (a TypeError from a
translator, a KeyError, a pydantic ValidationError that escaped...).

Documents are built from the real vocabulary (section names, current and handbook field names, mixture
keys) with values of every YAML type, then dumped and sometimes damaged (tabs, duplicated or cut lines), so
that most examples get past the parser into layering, translation and validation.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignkit.config import deprecations
from alignkit.config.resolve import resolve_config
from alignkit.config.run import SECTIONS, section_fields
from alignkit.errors import ConfigError
from alignkit.launch.build import plan_run
from alignkit.launch.spec import LaunchPlan

FIELDS = sorted({f for task in ("sft", "dpo") for names in section_fields(task).values() for f in names})
MIXTURE_KEYS = ["id", "path", "config", "split", "revision", "columns", "weight", "test"]
VOCAB = sorted(set(FIELDS) | set(SECTIONS) | set(deprecations.KEYS) | set(deprecations.MIX_KEYS)
               | set(deprecations.OWNED) | {"description", "task", "recipe", "profile", "mixture"} | set(MIXTURE_KEYS))

keys = st.one_of(
    st.sampled_from(VOCAB),
    st.builds(lambda s, k: f"{s}.{k}", st.sampled_from(SECTIONS), st.sampled_from(FIELDS)),
    st.text(min_size=1, max_size=12),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["demo:model", "demo:data/sft_train.jsonl", "1e-5", "no", "auto", "bf16", "all-linear",
                     "zephyr", "none", "../../x", "~/y", "train", "test", "HuggingFaceH4/ultrachat_200k"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
mixture = st.lists(st.dictionaries(st.sampled_from(MIXTURE_KEYS + ["wieght"]), values, max_size=4), max_size=3)
sections = st.fixed_dictionaries(
    {}, optional={s: st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), values, max_size=5)
                  for s in SECTIONS},
)
documents = st.one_of(
    st.dictionaries(keys, values, max_size=8),
    sections,
    st.builds(lambda d, m, old: {**d, "data": {"mixture": m}, **old}, sections, mixture,
              st.dictionaries(st.sampled_from(sorted(deprecations.MIX_KEYS)), values, max_size=3)),
    values,
)


def damage(text: str, how: int, where: int) -> str:
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    i = where % len(lines)
    if how == 1:  # a tab
        lines[i] = "\t" + lines[i]
    elif how == 2:  # a line twice (duplicate keys)
        lines.insert(i, lines[i])
    elif how == 3:  # cut short
        lines = lines[:i] + [lines[i][: len(lines[i]) // 2]]
    elif how == 4:  # bad indentation
        lines[i] = "   " + lines[i]
    return "".join(lines)


yaml_texts = st.one_of(
    st.builds(damage, documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True, sort_keys=False)),
              st.integers(0, 4), st.integers(0, 50)),
    st.text(max_size=200),
)
override_values = st.one_of(st.text(max_size=20), values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()))
overrides = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"--{k}={v}", keys, override_values),
        st.builds(lambda k: f"--{k}", keys),
        st.text(max_size=20),
    ),
    max_size=6,
)


def check(task: str, text: str, extra: list[str], recipe: str | None, profile: str | None, gpus, nodes) -> None:
    """Resolve and plan (batch arithmetic, launcher configs, the command) as a dry run does."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "user.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            plan = plan_run(task, recipe=recipe, profile=profile, config_files=[str(path)], overrides=extra,
                            num_gpus=gpus, num_nodes=nodes, dry_run=True)
        except ConfigError as exc:
            assert exc.problems, exc
            for p in exc.problems:  # each names a visible key, file or argument
                where = p.render().split(": ", 1)[0]
                assert where.strip() and where.isprintable(), p
            return
        assert isinstance(plan, LaunchPlan) and plan.command
        plan.to_json()  # what --json prints


SLOW = timedelta(seconds=5)  # an example taking longer hangs somewhere (it takes ~15 ms)
counts = st.one_of(st.none(), st.integers(min_value=-2, max_value=9), st.just(10**9))


@settings(max_examples=300, deadline=SLOW, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(task=st.sampled_from(["sft", "dpo"]), text=yaml_texts, extra=overrides,
       recipe=st.sampled_from([None, None, "tiny"]), profile=st.sampled_from([None, "cpu", "lora,cpu", "qlora", "x,y"]),
       gpus=counts, nodes=counts)
def test_any_yaml_and_overrides_give_a_plan_or_a_config_error(task, text, extra, recipe, profile, gpus, nodes):
    check(task, text, extra, recipe, profile, gpus, nodes)


@settings(max_examples=150, deadline=SLOW, suppress_health_check=[HealthCheck.too_slow])
@given(task=st.sampled_from(["sft", "dpo"]), extra=overrides)
def test_any_overrides_on_a_recipe_give_a_config_or_a_config_error(task, extra):
    try:
        resolve_config(task, recipe="tiny", profile="cpu", overrides=extra)
    except ConfigError as exc:
        assert exc.problems


@settings(max_examples=150, deadline=SLOW)
@given(value=st.one_of(st.integers(min_value=-5, max_value=10**18), st.text(max_size=6)),
       key=st.sampled_from(["launch.global_batch_size", "per_device_train_batch_size", "gradient_accumulation_steps",
                            "launch.num_gpus", "launch.num_nodes"]),
       gpus=counts)
def test_batch_arithmetic_never_hangs_or_crashes(value, key, gpus):
    """Huge, prime, zero or negative batch numbers and shapes: a plan or a ConfigError, quickly."""
    try:
        plan = plan_run("sft", recipe="tiny", profile="cpu", overrides=[f"--{key}={value}"], num_gpus=gpus,
                        dry_run=True)
    except ConfigError as exc:
        assert exc.problems
        return
    b = plan.batch
    assert b.global_batch_size == b.per_device_train_batch_size * b.gradient_accumulation_steps * plan.world_size
