"""The mixer: exact row counts, seeds, test splits, every kind of local source."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from alignkit.config.data import DataConfig
from alignkit.data.mixer import load_mixture, mix, plan_mixture
from alignkit.data.sampling import carve_count, rows_for_weight, source_indices
from alignkit.errors import ConfigError, DataError


def conv(tag: str, turns: int = 1) -> list[dict]:
    out = []
    for t in range(turns):
        out.append({"role": "user", "content": f"question {tag} {t}"})
        out.append({"role": "assistant", "content": f"answer {tag} {t}"})
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def sft_rows(prefix: str, n: int, **extra) -> list[dict]:
    return [{"messages": conv(f"{prefix}{i}"), **extra} for i in range(n)]


def tags(table) -> list[str]:
    """The row tag ("a17") of every row, from its first user message."""
    return [m[0]["content"].split()[1] for m in table.column("messages").to_pylist()]


@pytest.mark.parametrize(
    "weight,n,expected",
    [(0.29, 100, 29), (0.5, 7, 3), (1.0, 13, 13), (1.5, 10, 15), (2.0, 3, 6), (2.5, 3, 7), (0.001, 100, 0),
     (0.1, 30, 3), (0.7, 10, 7), (1 / 3, 3, 0)],
)
def test_rows_for_weight_is_floor_in_decimal(weight, n, expected):
    # 0.29 * 100 is 28.999999999999996 in floats; the weight as written times n is 29
    assert rows_for_weight(weight, n) == expected


def test_carve_count_rounds_fractions_up_and_takes_counts_as_is():
    assert carve_count(0.1, 39) == 4
    assert carve_count(0.1, 40) == 4
    assert carve_count(0.25, 10) == 3
    assert carve_count(5, 100) == 5


def test_weight_above_one_repeats_every_row_and_shares_the_fraction_with_lower_weights():
    half = source_indices(10, 0.5, seed=7)
    one_and_half = source_indices(10, 1.5, seed=7)
    counts = Counter(one_and_half.tolist())
    assert len(one_and_half) == 15
    assert set(counts) == set(range(10))
    assert sorted(r for r, c in counts.items() if c == 2) == sorted(half.tolist())
    assert len(set(half.tolist())) == 5  # no repeats below 1


def test_exact_counts_per_source_and_plan_matches(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", sft_rows("a", 100))
    b = write_jsonl(tmp_path / "b.jsonl", sft_rows("b", 10))
    c = write_jsonl(tmp_path / "c.jsonl", sft_rows("c", 7))
    data = DataConfig(mixture=[{"path": a, "weight": 0.29}, {"path": b, "weight": 2.5}, {"path": c}])
    res = mix(data, "sft")
    assert set(res.tables) == {"train"}
    got = Counter(t[0] for t in tags(res.tables["train"]))
    assert got == {"a": 29, "b": 25, "c": 7}
    assert [s.rows for s in res.plan.splits["train"]] == [29, 25, 7]
    assert res.plan.rows("train") == 61
    # every b row at least twice, half of them three times
    b_counts = Counter(t for t in tags(res.tables["train"]) if t.startswith("b"))
    assert sorted(b_counts.values()) == [2] * 5 + [3] * 5
    # the plan computes the same numbers without materializing
    assert plan_mixture(data, "sft").as_json() == res.plan.as_json()


def test_seed_decides_order_and_subset_and_sources_are_independent(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", sft_rows("a", 50))
    b = write_jsonl(tmp_path / "b.jsonl", sft_rows("b", 50))
    one = DataConfig(mixture=[{"path": a, "weight": 0.5}], mix_seed=1)
    same = tags(mix(one, "sft").tables["train"])
    assert same == tags(mix(one, "sft").tables["train"])
    other = tags(mix(one.model_copy(update={"mix_seed": 2}), "sft").tables["train"])
    assert set(other) != set(same)
    # adding a source does not change which rows of the first one are taken
    two = DataConfig(mixture=[{"path": a, "weight": 0.5}, {"path": b, "weight": 0.3}], mix_seed=1)
    with_b = tags(mix(two, "sft").tables["train"])
    assert {t for t in with_b if t.startswith("a")} == set(same)
    # and the mixture is shuffled, not concatenated
    first_b = next(i for i, t in enumerate(with_b) if t.startswith("b"))
    assert first_b < 25


def test_test_sources_are_whole_and_never_in_train(tmp_path):
    tr = write_jsonl(tmp_path / "train.jsonl", sft_rows("t", 40))
    te = write_jsonl(tmp_path / "test.jsonl", sft_rows("e", 9))
    ev = write_jsonl(tmp_path / "eval.jsonl", sft_rows("v", 4))
    data = DataConfig(
        mixture=[
            {"path": tr, "weight": 0.5},
            {"path": te, "split": "test", "weight": 0.1},  # weight ignored: never subsampled
            {"path": ev, "test": True},
        ]
    )
    res = mix(data, "sft")
    assert tags(res.tables["test"]) == [f"e{i}" for i in range(9)] + [f"v{i}" for i in range(4)]
    assert not {t for t in tags(res.tables["train"]) if t[0] in "ev"}
    assert res.tables["train"].num_rows == 20
    assert any("weight 0.1 is ignored" in w for w in res.plan.warnings)
    assert res.plan.test_from == "sources"
    assert [s.weight for s in res.plan.splits["test"]] == [None, None]


def test_carved_eval_split_counts_and_no_leak_with_repeats(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", sft_rows("a", 30))
    b = write_jsonl(tmp_path / "b.jsonl", sft_rows("b", 10))
    data = DataConfig(mixture=[{"path": a}, {"path": b, "weight": 2}], test_split_size=0.1)
    res = mix(data, "sft")
    test = tags(res.tables["test"])
    train = tags(res.tables["train"])
    assert len(test) == 4  # ceil(0.1 * 40 distinct rows)
    assert len(set(test)) == 4
    assert not set(test) & set(train)  # every copy of a carved row left train
    carved_b = sum(1 for t in test if t.startswith("b"))
    assert len(train) == 30 + 20 - (4 - carved_b) - 2 * carved_b
    assert res.plan.test_from == "carved"
    assert res.plan.rows("test") == 4
    count = mix(data.model_copy(update={"test_split_size": 7}), "sft")
    assert count.tables["test"].num_rows == 7
    with pytest.raises(ConfigError, match="leaves nothing to train on"):
        mix(data.model_copy(update={"test_split_size": 40}), "sft")


def test_same_file_in_train_and_test_is_refused(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", sft_rows("a", 3))
    data = DataConfig(mixture=[{"path": a}, {"path": f"{tmp_path}/./a.jsonl", "test": True}])
    with pytest.raises(ConfigError, match="train and test"):
        mix(data, "sft")


def test_local_source_kinds(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sft_rows("x", 6)
    # a JSON array, parquet, csv with JSON-encoded messages, a glob over shards, a split directory
    (tmp_path / "arr.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    with open(tmp_path / "c.csv", "w") as fh:
        import csv

        w = csv.writer(fh)
        w.writerow(["messages", "note"])
        for r in rows:
            w.writerow([json.dumps(r["messages"]), "hi"])
    import gzip

    with gzip.open(tmp_path / "z.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    write_jsonl(tmp_path / "shard-0.jsonl", rows[:2])
    write_jsonl(tmp_path / "shard-1.jsonl", rows[2:])
    d = tmp_path / "dir"
    (d / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:4]), d / "data" / "train-00000-of-00001.parquet")
    write_jsonl(d / "test.jsonl", rows[4:])
    # save_to_disk: a DatasetDict and a single Dataset
    dd = datasets.DatasetDict({"train_sft": datasets.Dataset.from_list(rows), "test_sft": datasets.Dataset.from_list(rows[:1])})
    dd.save_to_disk(str(tmp_path / "dd"))
    datasets.Dataset.from_list(rows[:3]).save_to_disk(str(tmp_path / "single"))

    def n(src):
        return mix(DataConfig(mixture=[src]), "sft").tables["train"].num_rows

    assert n({"path": str(tmp_path / "arr.json")}) == 6
    assert n({"path": str(tmp_path / "p.parquet")}) == 6
    assert n({"path": str(tmp_path / "z.jsonl.gz")}) == 6
    assert n({"path": str(tmp_path / "c.csv"), "columns": ["messages"]}) == 6
    assert n({"path": str(tmp_path / "shard-*.jsonl")}) == 6
    assert n({"path": str(d)}) == 4
    assert n({"path": str(tmp_path / "dd"), "split": "train_sft"}) == 6
    assert n({"path": str(tmp_path / "single")}) == 3
    # the old handbook's local layout: DIR/<split> written by save_to_disk, one per split
    datasets.Dataset.from_list(rows[:5]).save_to_disk(str(tmp_path / "old" / "train_sft"))
    assert n({"path": str(tmp_path / "old"), "split": "train_sft"}) == 5
    res = mix(DataConfig(mixture=[{"path": str(d)}, {"path": str(d), "split": "test"}]), "sft")
    assert res.tables["test"].num_rows == 2
    with pytest.raises(DataError, match=r"no split 'validation' \(it has: train_sft, test_sft\)"):
        mix(DataConfig(mixture=[{"path": str(tmp_path / "dd"), "split": "validation"}]), "sft")
    with pytest.raises(DataError, match="splits found: test, train"):
        mix(DataConfig(mixture=[{"path": str(d), "split": "dev"}]), "sft")


def test_missing_files_and_bad_formats_name_the_source(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        mix(DataConfig(mixture=[{"path": str(tmp_path / "nope.jsonl")}]), "sft")
    with pytest.raises(DataError, match="matches no files"):
        mix(DataConfig(mixture=[{"path": str(tmp_path / "*.parquet")}]), "sft")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported file type .txt"):
        mix(DataConfig(mixture=[{"path": str(tmp_path / "x.txt")}]), "sft")
    (tmp_path / "bad.jsonl").write_text(json.dumps(sft_rows("a", 1)[0]) + "\n{not json\n")
    with pytest.raises(DataError) as e:
        mix(DataConfig(mixture=[{"path": str(tmp_path / "bad.jsonl")}]), "sft")
    assert "bad.jsonl:2" in str(e.value)


def test_hub_source_offline_is_a_clear_data_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = DataConfig(mixture=[{"id": "nobody/no-such-dataset-xyz", "split": "train_sft"}])
    with pytest.raises(DataError) as e:
        mix(data, "sft")
    p = e.value.problems[0]
    assert p.where == "source nobody/no-such-dataset-xyz"
    assert "cannot load from the Hub" in p.message
    assert "HF_HUB_OFFLINE" in p.fix and "path:" in p.fix



def test_a_dataset_built_by_a_loading_script_is_refused_with_the_parquet_export_as_the_fix(tmp_path, monkeypatch):
    """yhavinga/mc4_nl_cleaned (the handbook's gpt2-nl CPT data) builds its configs with mc4_nl_cleaned.py,
    which datasets >= 4 refuses; a directory of that name with the script in it stands in for the repo."""
    repo = tmp_path / "yhavinga" / "mc4_nl_cleaned"
    repo.mkdir(parents=True)
    (repo / "mc4_nl_cleaned.py").write_text("import datasets\n")
    monkeypatch.chdir(tmp_path)
    data = DataConfig(mixture=[{"id": "yhavinga/mc4_nl_cleaned", "config": "tiny", "split": "train"}])
    with pytest.raises(DataError) as e:
        mix(data, "cpt")
    (p,) = e.value.problems
    assert p.where == "source yhavinga/mc4_nl_cleaned"
    assert "loading script (mc4_nl_cleaned.py)" in p.message and "datasets 4" in p.message
    assert "revision: refs/convert/parquet" in p.fix and "path:" in p.fix and "HF_HUB_OFFLINE" not in p.fix

def test_different_columns_are_refused_with_the_fix_and_reconciled_by_columns(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", sft_rows("a", 5, prompt="p", prompt_id="i"))
    b = write_jsonl(tmp_path / "b.jsonl", sft_rows("b", 5))
    with pytest.raises(DataError) as e:
        mix(DataConfig(mixture=[{"path": a}, {"path": b}]), "sft")
    (p,) = e.value.problems
    assert p.where.startswith("data.mixture[0]")
    assert "['prompt', 'prompt_id']" in p.message
    assert p.fix == "add 'columns: [\"messages\"]' to this source (the columns all train sources share)"
    res = mix(DataConfig(mixture=[{"path": a, "columns": ["messages"]}, {"path": b}]), "sft")
    assert res.tables["train"].column_names == ["messages"]
    with pytest.raises(DataError, match="'nope'"):
        mix(DataConfig(mixture=[{"path": a, "columns": ["messages", "nope"]}]), "sft")


def test_load_mixture_returns_a_datasetdict_and_dpo_rows_come_out_conversational(tmp_path):
    rows = [
        {
            "prompt": f"q{i}",
            "chosen": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "bad"}],
        }
        for i in range(8)
    ]
    tr = write_jsonl(tmp_path / "prefs.jsonl", rows)
    te = write_jsonl(tmp_path / "prefs_test.jsonl", rows[:2])
    dd = load_mixture(DataConfig(mixture=[{"path": tr}, {"path": te, "split": "test_prefs"}]), "dpo")
    assert set(dd) == {"train", "test"}
    assert dd["train"].num_rows == 8 and dd["test"].num_rows == 2
    row = dd["test"][0]
    assert row["prompt"] == [{"role": "user", "content": "q0"}]
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]
    assert row["rejected"] == [{"role": "assistant", "content": "bad"}]
    assert dd["train"].column_names[:3] == ["prompt", "chosen", "rejected"]


def test_empty_mixture_is_a_config_error():
    with pytest.raises(ConfigError, match="no data sources"):
        mix(DataConfig(), "sft")


def test_one_local_file_as_train_and_test_is_refused(tmp_path):
    """A plain file has the same rows whatever split label it is given: eval would equal training."""
    from alignkit.config.data import DataConfig
    from alignkit.data.mixer import plan_mixture
    from alignkit.errors import ConfigError

    f = tmp_path / "rows.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    data = DataConfig(mixture=[{"path": str(f), "split": "train"}, {"path": str(f), "split": "test"}])
    with pytest.raises(ConfigError) as exc:
        plan_mixture(data, "sft")
    assert "train and test" in str(exc.value)


def test_invalid_rows_name_the_line_an_editor_shows(tmp_path):
    """Rows are 0-based over a source; in JSON-lines files (blank lines skipped, gzip too) the error also
    gives the 1-based line, and the file among several."""
    import gzip

    good = json.dumps({"messages": conv("ok")})
    bad = json.dumps({"messages": [{"role": "wizard", "content": "hi"}]})
    (tmp_path / "one.jsonl").write_text(f"{good}\n\n{good}\n   \n{bad}\n")
    with gzip.open(tmp_path / "one.jsonl.gz", "wt") as fh:
        fh.write(f"\n{bad}\n")
    (tmp_path / "shard-0.jsonl").write_text(f"{good}\n{good}\n")
    (tmp_path / "shard-1.jsonl").write_text(f"{good}\n\n{bad}\n")
    (tmp_path / "array.json").write_text(json.dumps([json.loads(good), json.loads(bad)], indent=1))

    def where(path):
        with pytest.raises(DataError) as exc:
            mix(DataConfig(mixture=[{"path": str(path)}]), "sft")
        [p] = exc.value.problems
        assert "wizard" in p.message
        return p.where

    assert where(tmp_path / "one.jsonl").endswith("row 2 (line 5)")
    assert where(tmp_path / "one.jsonl.gz").endswith("row 0 (line 2)")
    assert where(tmp_path / "shard-*.jsonl").endswith("row 3 (file shard-1.jsonl row 1, line 3)")
    assert where(tmp_path / "array.json").endswith("row 1")  # a JSON array has no lines to point at


def test_a_mix_build_as_a_source_reads_its_split_and_names_the_ones_it_has(tmp_path):
    from alignkit.data.build import build_mixture
    from alignkit.data.sources import load_source, source_files

    write_jsonl(tmp_path / "a.jsonl", sft_rows("a", 6))
    build_mixture(DataConfig(mixture=[{"path": str(tmp_path / "a.jsonl")}]), "sft", tmp_path / "b", render=False)
    src = DataConfig(mixture=[{"path": str(tmp_path / "b")}]).mixture[0]
    loaded = load_source(src)
    assert loaded.kind == "build" and loaded.table.num_rows == 6
    assert source_files(src) == ("build", loaded.files)
    other = DataConfig(mixture=[{"path": str(tmp_path / "b"), "split": "dev"}]).mixture[0]
    assert source_files(other) == ("build", [])
    with pytest.raises(DataError, match=r"this mix build has no split 'dev' \(it has: train\)"):
        load_source(other)
