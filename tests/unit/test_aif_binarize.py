"""Binarization on hand-made ratings: the seeded choices exactly, ties, min-margin, skipped prompts,
the output format (ultrafeedback_binarized), splits, manifest, atomic writes, and the mixer reading it."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from alignkit.aif import binarize as ab
from alignkit.aif.binarize import Candidate, choose_pair
from alignkit.aif.manifest import WorkDir, derive_seed, parse_test_size, prompt_id, rows_digest, split_test
from alignkit.errors import DataError, UsageError
from tests.aif_support import write_work

PID = "p-1"


def rng_for(seed: int, pid: str) -> random.Random:
    """The documented per-prompt stream, computed independently of alignkit's code."""
    digest = hashlib.sha256(f"{seed}:pair:{pid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def C(model, sample, score, text=None):
    return Candidate(model, sample, text if text is not None else f"{model}{sample}", score)


def test_derive_seed_is_the_documented_formula():
    assert derive_seed(42, "pair", PID) == int.from_bytes(hashlib.sha256(b"42:pair:p-1").digest()[:8], "big")
    assert derive_seed(42, "pair", PID) != derive_seed(43, "pair", PID)


def test_best_vs_random_draws_one_lower_completion_exactly_as_documented():
    cands = [C("a", 0, 4.5), C("a", 1, 3.0), C("b", 0, 2.0), C("b", 1, 4.0)]
    lower = [C("a", 1, 3.0), C("b", 0, 2.0), C("b", 1, 4.0)]  # (model, sample) order, all below 4.5
    seen = set()
    for seed in range(60):
        chosen, rejected, reason = choose_pair(cands, prompt_id=PID, seed=seed)
        assert reason is None and chosen == C("a", 0, 4.5)
        assert rejected == lower[rng_for(seed, PID).randrange(3)]
        seen.add(rejected)
    assert seen == set(lower)  # every lower completion is possible, the best never is
    # the input order does not matter; the same seed gives the same pair
    again = choose_pair(list(reversed(cands)), prompt_id=PID, seed=7)
    assert again == choose_pair(cands, prompt_id=PID, seed=7)
    # another prompt id is another stream
    firsts = {choose_pair(cands, prompt_id=f"p{i}", seed=0)[1] for i in range(40)}
    assert len(firsts) == 3


def test_tied_best_completions_are_drawn_first_then_the_rejected_one():
    cands = [C("a", 0, 4.0), C("b", 0, 4.0), C("c", 0, 1.0), C("c", 1, 2.0)]
    for seed in range(30):
        rng = rng_for(seed, PID)
        top = [C("a", 0, 4.0), C("b", 0, 4.0)]
        lower = [C("c", 0, 1.0), C("c", 1, 2.0)]
        want_chosen = top[rng.randrange(2)]
        want_rejected = lower[rng.randrange(2)]
        chosen, rejected, _ = choose_pair(cands, prompt_id=PID, seed=seed)
        assert (chosen, rejected) == (want_chosen, want_rejected)


def test_best_vs_worst_takes_the_lowest_and_draws_among_tied_worst():
    cands = [C("a", 0, 4.5), C("a", 1, 3.0), C("b", 0, 2.0), C("b", 1, 4.0)]
    for seed in range(10):
        assert choose_pair(cands, prompt_id=PID, seed=seed, strategy="best-vs-worst")[1] == C("b", 0, 2.0)
    tied = [C("a", 0, 5.0), C("a", 1, 1.5), C("b", 0, 1.5), C("b", 1, 3.0)]
    got = set()
    for seed in range(30):
        rng = rng_for(seed, PID)  # a single best: no draw for chosen
        want = [C("a", 1, 1.5), C("b", 0, 1.5)][rng.randrange(2)]
        _, rejected, _ = choose_pair(tied, prompt_id=PID, seed=seed, strategy="best-vs-worst")
        assert rejected == want
        got.add(rejected)
    assert len(got) == 2


def test_ties_fewer_than_two_min_margin_and_identical_texts():
    assert choose_pair([C("a", 0, 3.0), C("b", 0, 3.0)], prompt_id=PID) == (None, None, "tie")
    assert choose_pair([C("a", 0, 3.0)], prompt_id=PID) == (None, None, "fewer_than_two_rated")
    assert choose_pair([], prompt_id=PID) == (None, None, "fewer_than_two_rated")
    cands = [C("a", 0, 4.5), C("a", 1, 4.0), C("b", 0, 3.0)]
    # margin 1.0: only the 3.0 completion qualifies, whatever the seed
    for seed in range(10):
        assert choose_pair(cands, prompt_id=PID, seed=seed, min_margin=1.0)[1] == C("b", 0, 3.0)
    assert choose_pair(cands, prompt_id=PID, min_margin=1.6) == (None, None, "below_min_margin")
    # a margin exactly equal to --min-margin counts (4.25 - 3.75 = 0.5)
    assert choose_pair([C("a", 0, 4.25), C("b", 0, 3.75)], prompt_id=PID, min_margin=0.5)[2] is None
    # a lower-rated copy of the chosen text is never the rejected one
    same = [C("a", 0, 5.0, "red"), C("b", 0, 2.0, "red "), C("c", 0, 3.0, "blue")]
    for seed in range(10):
        assert choose_pair(same, prompt_id=PID, seed=seed)[1] == C("c", 0, 3.0, "blue")
    assert choose_pair([C("a", 0, 5.0, "x"), C("b", 0, 1.0, "x")], prompt_id=PID) == (None, None, "identical")
    with pytest.raises(UsageError):
        choose_pair(same, prompt_id=PID, strategy="best-vs-median")


def test_split_test_is_a_seeded_sample_of_the_sorted_ids():
    ids = [f"id{i:02d}" for i in range(20)]
    got = split_test(list(reversed(ids)), 5, seed=3)
    assert got == set(random.Random(derive_seed(3, "test-split")).sample(sorted(ids), 5))
    assert split_test(ids, 0.1, seed=3) == set(random.Random(derive_seed(3, "test-split")).sample(sorted(ids), 2))
    assert len(split_test(ids, 0.05, seed=1)) == 1  # ceil(0.05 * 20)
    assert len(split_test(ids, 0.11, seed=1)) == 3  # ceil(2.2)
    assert split_test(ids, 0, seed=1) == set()
    with pytest.raises(UsageError):
        split_test(ids, 20, seed=1)  # nothing left to train on
    with pytest.raises(UsageError):
        split_test(ids, 1.0, seed=1)
    assert parse_test_size("200") == 200 and parse_test_size("0.05") == 0.05
    with pytest.raises(UsageError):
        parse_test_size("five")


# --------------------------------------------------------------------------- whole datasets

P1, P2, P3, P4, P5, P6 = "Name a color.", "Name an animal.", "Say hi.", "Count to two.", "Say yes.", "Name a fruit."
TABLE = {
    # scores: a0 = (5+5+4+4)/4 = 4.5, a1 = 3.0, b0 = 2.0 -> chosen a0, rejected drawn from {a1, b0}
    P1: {("a", 0): ("red", [5, 5, 4, 4]), ("a", 1): ("dog", [3, 3, 3, 3]), ("b", 0): ("cat", [2, 2, 2, 2])},
    # b0's honesty answer has no rating: b0 has no score; a0 4.0 vs a1 2.0
    P2: {("a", 0): ("cat", [4, 4, 4, 4]), ("a", 1): ("blue", [2, 2, 2, 2]),
         ("b", 0): ("owl", [5, "no idea", 5, 5])},
    P3: {("a", 0): ("hi", [3, 3, 3, 3]), ("b", 0): ("hello", [3, 3, 3, 3])},  # tie
    P4: {("a", 0): ("1 2", [5, 5, 5, 5]), ("b", 0): ("2", [1, 1, 1, None])},  # b0 not fully rated yet -> < 2 rated
    # an out-of-range rating ([[9]]) makes b0 unscored: b1 (4.75) vs a0 (1.0)
    P5: {("a", 0): ("no", [1, 1, 1, 1]), ("b", 0): ("yes", [9, 5, 5, 5]), ("b", 1): ("yes!", [5, 5, 5, 4])},
    P6: {("a", 0): ("apple", [4, 4, 4, 4]), ("b", 0): ("pear", [3, 4, 4, 4])},  # 4.0 vs 3.75
}  # fmt: skip


def _load(out: Path):
    import datasets

    return datasets.load_from_disk(str(out))


def test_binarize_writes_the_handbook_format_exactly(tmp_path):
    work = write_work(tmp_path / "work", TABLE)
    out = tmp_path / "prefs"
    m = ab.binarize(WorkDir(work), out, seed=5, test_size=1)
    dd = _load(out)
    assert set(dd) == {"train_prefs", "test_prefs", "train_sft", "test_sft"}
    for split in dd.values():
        assert split.column_names == ["prompt", "prompt_id", "chosen", "rejected", "messages", "score_chosen", "score_rejected"]
    rows = {r["prompt"]: r for s in ("train_prefs", "test_prefs") for r in dd[s]}
    assert set(rows) == {P1, P2, P5, P6}
    r1 = rows[P1]
    want_rej = [("dog", 3.0), ("cat", 2.0)][rng_for(5, prompt_id(P1)).randrange(2)]
    assert r1["prompt_id"] == hashlib.sha256(P1.encode()).hexdigest()
    assert r1["chosen"] == [{"content": P1, "role": "user"}, {"content": "red", "role": "assistant"}]
    assert r1["rejected"] == [{"content": P1, "role": "user"}, {"content": want_rej[0], "role": "assistant"}]
    assert r1["messages"] == r1["chosen"]
    assert (r1["score_chosen"], r1["score_rejected"]) == (4.5, want_rej[1])
    assert (rows[P2]["chosen"][1]["content"], rows[P2]["rejected"][1]["content"]) == ("cat", "blue")
    assert (rows[P5]["chosen"][1]["content"], rows[P5]["rejected"][1]["content"]) == ("yes!", "no")
    assert (rows[P5]["score_chosen"], rows[P5]["score_rejected"]) == (4.75, 1.0)
    assert (rows[P6]["score_chosen"], rows[P6]["score_rejected"]) == (4.0, 3.75)
    # splits: one test pair, drawn with the seed; SFT splits are the same rows (no test prompt trains)
    test_ids = split_test(sorted(r["prompt_id"] for r in rows.values()), 1, 5)
    assert [r["prompt_id"] for r in dd["test_prefs"]] == sorted(test_ids)
    assert [r["prompt_id"] for r in dd["train_prefs"]] == sorted(set(r["prompt_id"] for r in rows.values()) - test_ids)
    assert dd["train_sft"].to_list() == dd["train_prefs"].to_list() and dd["test_sft"].to_list() == dd["test_prefs"].to_list()
    # the report: skipped prompts by reason, completions without a score, per-model counts
    c = m["counts"]
    assert c["pairs"] == 4 and c["prompts"] == 6 and c["completions"] == 15
    assert c["skipped"] == {"fewer_than_two_rated": 1, "tie": 1, "below_min_margin": 0, "identical": 0}
    assert (c["completions_unrated"], c["completions_invalid_rating"]) == (1, 2)
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert {(s["prompt_id"], s["reason"]) for s in skipped} == {(prompt_id(P3), "tie"), (prompt_id(P4), "fewer_than_two_rated")}
    assert m["per_model"]["a"]["chosen"] == 3 and m["per_model"]["b"]["chosen"] == 1
    # the manifest on disk: marker, settings, content hashes of what load_from_disk returns
    disk = json.loads((out / "manifest.json").read_text())
    assert disk["alignkit_aif"] == 1 and disk["settings"]["strategy"] == "best-vs-random" and disk["settings"]["seed"] == 5
    for name, split in dd.items():
        assert disk["splits"][name] == {"rows": len(split), "sha256": rows_digest(split.to_list())}
    assert disk["input"]["ratings_sha256"] == hashlib.sha256((work / "ratings.jsonl").read_bytes()).hexdigest()
    pairs = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert {p["prompt_id"]: p["chosen"]["model"] + str(p["chosen"]["sample"]) for p in pairs}[prompt_id(P5)] == "b1"
    assert (out / "scores.png").stat().st_size > 1000 and disk["plot"] == "scores.png"
    # nothing left behind next to the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs", "work"]


def test_min_margin_and_best_vs_worst_change_the_pairs(tmp_path):
    work = WorkDir(write_work(tmp_path / "work", TABLE))
    m = ab.binarize(work, tmp_path / "o1", min_margin=1.0, test_size=0)
    assert m["counts"]["pairs"] == 3 and m["counts"]["skipped"]["below_min_margin"] == 1  # P6 (0.25)
    m = ab.binarize(work, tmp_path / "o2", strategy="best-vs-worst", test_size=0)
    rows = {r["prompt"]: r for r in _load(tmp_path / "o2")["train_prefs"]}
    assert rows[P1]["rejected"][1]["content"] == "cat" and rows[P1]["score_rejected"] == 2.0
    assert len(_load(tmp_path / "o2")["test_prefs"]) == 0
    # scores over a subset of the aspects: helpfulness only
    m = ab.binarize(work, tmp_path / "o3", aspects=["helpfulness"], test_size=0)
    rows = {r["prompt"]: r for r in _load(tmp_path / "o3")["train_prefs"]}
    assert (rows[P6]["score_chosen"], rows[P6]["score_rejected"]) == (4.0, 3.0)
    assert P2 in rows and rows[P2]["chosen"][1]["content"] == "owl"  # owl's helpfulness is valid: 5
    with pytest.raises(UsageError, match="has not rated"):
        ab.binarize(work, tmp_path / "o4", aspects=["harmlessness"])


def test_output_loads_through_the_mixer_for_dpo_and_sft(tmp_path):
    from alignkit.config.data import DataConfig
    from alignkit.data.mixer import load_mixture

    work = WorkDir(write_work(tmp_path / "work", TABLE))
    out = tmp_path / "prefs"
    ab.binarize(work, out, test_size=1)
    data = DataConfig(mixture=[{"path": str(out), "split": "train_prefs"}, {"path": str(out), "split": "test_prefs"}])
    dd = load_mixture(data, "dpo")
    assert (len(dd["train"]), len(dd["test"])) == (3, 1)
    row = dd["train"][0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    sft = load_mixture(DataConfig(mixture=[{"path": str(out), "split": "train_sft"}]), "sft")
    assert len(sft["train"]) == 3 and sft["train"][0]["messages"][-1]["role"] == "assistant"


def test_output_dir_safety_and_atomic_replacement(tmp_path, monkeypatch):
    work = WorkDir(write_work(tmp_path / "work", TABLE))
    out = tmp_path / "prefs"
    ab.binarize(work, out, test_size=0)
    # a failure while writing leaves the previous dataset as it was, and no temp dir behind
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ab, "plot_scores", boom)  # plot failures are tolerated ...
    ab.binarize(work, out, test_size=0, seed=9)
    assert "not drawn: RuntimeError" in json.loads((out / "manifest.json").read_text())["plot"]
    import datasets

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", boom)  # ... a failed save is not
    with pytest.raises(RuntimeError):
        ab.binarize(work, out, test_size=0, seed=11)
    assert json.loads((out / "manifest.json").read_text())["settings"]["seed"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prefs", "work"]
    monkeypatch.undo()
    # a non-empty directory alignkit did not write is refused unless --overwrite
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="did not write"):
        ab.binarize(work, other)
    ab.binarize(work, other, overwrite=True, test_size=0)
    assert not (other / "notes.txt").exists() and (other / "dataset_dict.json").is_file()
    with pytest.raises(UsageError, match="work directory"):
        ab.binarize(work, work.path)


def test_judge_selection_and_nothing_to_pair(tmp_path):
    work_dir = write_work(tmp_path / "w", TABLE, judge="j1")
    # a second judge's ratings in the same work dir
    extra = write_work(tmp_path / "tmp", TABLE, judge="j2")
    with open(work_dir / "ratings.jsonl", "a") as f:
        f.write((extra / "ratings.jsonl").read_text())
    man = json.loads((work_dir / "aif.json").read_text())
    man["judges"]["j2"] = {"aspects": ["helpfulness", "honesty", "instruction_following", "truthfulness"]}
    (work_dir / "aif.json").write_text(json.dumps(man))
    with pytest.raises(UsageError, match="several judges"):
        ab.binarize(WorkDir(work_dir), tmp_path / "o")
    with pytest.raises(UsageError, match="no ratings by this judge"):
        ab.binarize(WorkDir(work_dir), tmp_path / "o", judge="j3")
    assert ab.binarize(WorkDir(work_dir), tmp_path / "o", judge="j2", test_size=0)["judge"]["model"] == "j2"
    ties = write_work(tmp_path / "ties", {P3: TABLE[P3]})
    with pytest.raises(DataError, match="no preference pair"):
        ab.binarize(WorkDir(ties), tmp_path / "o5")
    with pytest.raises(DataError, match="no completions.jsonl"):
        ab.binarize(WorkDir(tmp_path / "empty"), tmp_path / "o6")
