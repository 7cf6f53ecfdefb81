"""YAML reading: line numbers, duplicate keys, tabs, syntax errors, safe loading only."""

from __future__ import annotations

import textwrap

import pytest

from alignkit.config.layers import parse_overrides
from alignkit.config.resolve import resolve_config
from alignkit.config.yamlio import LineDict, dump_yaml, load_value, parse_yaml, read_yaml
from alignkit.errors import ConfigError


def _one_problem(exc: pytest.ExceptionInfo) -> "object":
    assert len(exc.value.problems) == 1, exc.value.render()
    return exc.value.problems[0]


def test_mappings_remember_the_line_of_each_key():
    doc = parse_yaml("a: 1\n\ntrain:\n  learning_rate: 2.0e-05\n  seed: 3\nb: [x, y]\n", "f.yaml")
    assert isinstance(doc, LineDict)
    assert doc.lines == {"a": 1, "train": 3, "b": 6}
    assert doc["train"].lines == {"learning_rate": 4, "seed": 5}
    assert doc == {"a": 1, "train": {"learning_rate": 2e-05, "seed": 3}, "b": ["x", "y"]}


def test_duplicate_key_is_an_error_with_both_lines():
    with pytest.raises(ConfigError) as exc:
        parse_yaml("train:\n  seed: 1\n  lr: 2\n  seed: 3\n", "dup.yaml")
    p = _one_problem(exc)
    assert p.where == "dup.yaml:4"
    assert "'seed' appears twice (lines 2 and 4)" in p.message
    assert p.fix == "keep one 'seed' (the first is on line 2)"


def test_duplicate_top_level_key_in_a_file(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("learning_rate: 1.0e-5\nseed: 1\nlearning_rate: 2.0e-5\n")
    with pytest.raises(ConfigError) as exc:
        read_yaml(f)
    assert _one_problem(exc).where == f"{f}:3"


def test_tab_indentation_names_the_line_and_the_fix():
    with pytest.raises(ConfigError) as exc:
        parse_yaml("train:\n\tseed: 1\n", "tabs.yaml")
    p = _one_problem(exc)
    assert p.where == "tabs.yaml:2"
    assert p.message.startswith("YAML error: ")
    assert p.fix == "indent with spaces: YAML does not allow tabs"


def test_syntax_error_names_the_line():
    with pytest.raises(ConfigError) as exc:
        parse_yaml("model:\n  model_name_or_path: x\ntrain: [1, 2\nseed: 3\n", "broken.yaml")
    p = _one_problem(exc)
    assert p.where.startswith("broken.yaml:")
    assert int(p.where.rsplit(":", 1)[1]) in (3, 4)
    assert p.fix == "fix the YAML syntax"


def test_python_object_tags_are_refused():
    text = "train: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ConfigError) as exc:
        parse_yaml(text, "evil.yaml")
    p = _one_problem(exc)
    assert p.where == "evil.yaml:1"
    assert "python/object" in p.message


def test_python_tags_are_refused_in_a_config_file_through_resolution(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"train:\n  seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(evil)])
    assert any(p.where == f"{evil}:2" for p in exc.value.problems), exc.value.render()
    assert not marker.exists()


def test_python_tags_are_refused_in_override_values():
    with pytest.raises(Exception) as exc:
        load_value("!!python/object/apply:os.getcwd []")
    assert "python/object" in str(exc.value)
    # on the command line such a value stays inert text (and then fails the field's type check)
    overrides, _, problems = parse_overrides(["--hub_model_id=!!python/object/apply:os.getcwd []"])
    assert overrides == {"hub_model_id": "!!python/object/apply:os.getcwd []"}
    assert problems == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1e-6", 1e-6),
        ("3e-5", 3e-5),
        ("2.0e-05", 2e-05),
        ("-3E+2", -300.0),
        ("12", 12),
        ("1.5", 1.5),
        ("true", True),
        ("null", None),
        ("[a, b]", ["a", "b"]),
        ("{use_reentrant: false}", {"use_reentrant": False}),
        ("'1e-6'", "1e-6"),
        ("e5", "e5"),
        ("a=b", "a=b"),
    ],
)
def test_values_are_yaml_typed_with_exponent_floats(text, expected):
    value = load_value(text)
    assert value == expected
    assert isinstance(value, type(expected))  # (a mapping comes back as LineDict, a dict)
    assert isinstance(value, str) == isinstance(expected, str)


def test_exponent_floats_in_free_form_dicts_stay_numbers(tmp_path):
    f = tmp_path / "sched.yaml"
    f.write_text("train:\n  lr_scheduler_kwargs: {min_lr: 1e-6}\n")
    r = resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(f)])
    assert r.config.train.lr_scheduler_kwargs == {"min_lr": 1e-6}
    assert isinstance(r.config.train.lr_scheduler_kwargs["min_lr"], float)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError) as exc:
        read_yaml(tmp_path / "nope.yaml")
    p = _one_problem(exc)
    assert (p.where, p.message, p.fix) == (str(tmp_path / "nope.yaml"), "file not found", "check the path")
    with pytest.raises(ConfigError) as exc:
        read_yaml(tmp_path)
    assert _one_problem(exc).message == "is a directory, not a YAML file"


def test_undecodable_file(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(ConfigError) as exc:
        read_yaml(f)
    assert _one_problem(exc).message.startswith("cannot read:")


def test_dump_round_trips_plain_data():
    data = parse_yaml(textwrap.dedent("""\
        model: {model_name_or_path: m}
        data:
          mixture:
            - {id: a/b, split: train}
        """), "x")
    text = dump_yaml(data)
    assert "!!" not in text  # LineDict is dumped as a plain mapping
    assert parse_yaml(text, "y") == data
