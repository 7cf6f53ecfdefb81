"""Preference accuracy, implicit reward and assistant-token loss on the tiny demo model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from alignkit.errors import ConfigError, DataError
from alignkit.eval.prefs import eval_loss, preference_metrics


@pytest.fixture(scope="module")
def prefs_test(tiny_assets, load_jsonl):
    return load_jsonl(tiny_assets.prefs_test)


@pytest.fixture(scope="module")
def sft_test(tiny_assets, load_jsonl):
    return load_jsonl(tiny_assets.sft_test)


def _hand_logp(model_dir, prompt: str, answer: str) -> tuple[float, int]:
    """log p(answer turn | prompt) computed directly, one sequence, no padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    p = tok(f"<|user|>\n{prompt}</s>\n<|assistant|>\n", add_special_tokens=False)["input_ids"]
    c = tok(f"{answer}</s>\n", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0], -1)
    return sum(float(logp[len(p) + k - 1, t]) for k, t in enumerate(c)), len(c)


@pytest.fixture(scope="module")
def color_model(tiny_assets, load_jsonl, tmp_path_factory):
    """The demo model after 40 plain-torch steps of NLL on color answers only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(tiny_assets.model_dir)
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src)
    rows = [r["chosen"] for r in load_jsonl(tiny_assets.prefs_train)]
    texts = [tok.apply_chat_template(m, tokenize=False) for m in rows]
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(40):
        batch = tok(texts[(step * 16) % 320 : (step * 16) % 320 + 16], return_tensors="pt", padding=True,
                    add_special_tokens=False)  # fmt: skip
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = tmp_path_factory.mktemp("color-model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_model_against_itself_has_zero_reward(tiny_model_dir, prefs_test, capfd):
    m = preference_metrics(tiny_model_dir, prefs_test, ref_model_dir=tiny_model_dir, beta=0.1)
    assert "Loading weights" not in capfd.readouterr().err  # no progress bar per load
    assert m["n"] == len(prefs_test) == 64
    assert m["mean_reward_margin"] == 0.0
    assert m["accuracy_reward"] == 0.5  # every row is a tie, ties count half
    assert 0.0 <= m["accuracy_logp"] <= 1.0 and m["beta"] == 0.1


def test_logps_match_a_hand_computation_and_do_not_depend_on_batching(tiny_model_dir, prefs_test):
    rows = prefs_test[:5]
    single = preference_metrics(tiny_model_dir, rows[:1])
    want_c, _ = _hand_logp(tiny_model_dir, rows[0]["prompt"], rows[0]["chosen"][-1]["content"])
    want_r, _ = _hand_logp(tiny_model_dir, rows[0]["prompt"], rows[0]["rejected"][-1]["content"])
    assert single["mean_chosen_logp"] == pytest.approx(want_c, abs=1e-4)
    assert single["mean_rejected_logp"] == pytest.approx(want_r, abs=1e-4)
    assert single["accuracy_logp"] == (1.0 if want_c > want_r else 0.0)
    # rows of different lengths padded together give the same numbers as one at a time
    a = preference_metrics(tiny_model_dir, rows, batch_size=1)
    b = preference_metrics(tiny_model_dir, rows, batch_size=16)
    for k in ("mean_chosen_logp", "mean_rejected_logp", "mean_logp_margin", "accuracy_logp"):
        assert a[k] == pytest.approx(b[k], abs=1e-4)


def test_trained_preference_is_measured(color_model, tiny_model_dir, prefs_test):
    base = preference_metrics(tiny_model_dir, prefs_test)
    trained = preference_metrics(color_model, prefs_test, ref_model_dir=tiny_model_dir, beta=0.5)
    assert base["accuracy_logp"] < 0.8
    assert trained["accuracy_logp"] >= 0.95
    assert trained["accuracy_reward"] >= 0.95 and trained["mean_reward_margin"] > 0
    # the implicit reward is beta * (policy margin - reference margin)
    expected = 0.5 * (trained["mean_logp_margin"] - base["mean_logp_margin"])
    assert trained["mean_reward_margin"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    # swapping chosen and rejected flips the picture
    swapped = [dict(r, chosen=r["rejected"], rejected=r["chosen"]) for r in prefs_test]
    flipped = preference_metrics(color_model, swapped)
    assert flipped["accuracy_logp"] == pytest.approx(1 - trained["accuracy_logp"])


def test_row_shapes_agree(tiny_model_dir, prefs_test):
    rows = prefs_test[:6]
    handbook = preference_metrics(tiny_model_dir, rows)
    strings = [
        {"prompt": r["prompt"], "chosen": r["chosen"][-1]["content"], "rejected": r["rejected"][-1]["content"]}
        for r in rows
    ]
    trl_style = [{"prompt": r["chosen"][:-1], "chosen": r["chosen"][-1:], "rejected": r["rejected"][-1:]} for r in rows]
    implicit = [{"chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    for other in (strings, trl_style, implicit):
        got = preference_metrics(tiny_model_dir, other)
        assert got["mean_logp_margin"] == pytest.approx(handbook["mean_logp_margin"], abs=1e-5)
        assert got["accuracy_logp"] == handbook["accuracy_logp"]


def test_bad_rows_are_data_errors(tiny_model_dir, prefs_test):
    good = prefs_test[0]
    other_prompt = dict(prefs_test[1])
    other_prompt["rejected"] = [{"role": "user", "content": "Something else."}, other_prompt["rejected"][-1]]
    with pytest.raises(DataError) as e:
        preference_metrics(tiny_model_dir, [good, other_prompt])
    assert "row 1" in str(e.value) and "rejected" in str(e.value) and "rendered prompt" in str(e.value)

    ends_with_user = dict(good, chosen=good["chosen"] + [{"role": "user", "content": "and?"}])
    with pytest.raises(DataError, match="last message"):
        preference_metrics(tiny_model_dir, [ends_with_user])
    with pytest.raises(DataError, match="missing 'rejected'"):
        preference_metrics(tiny_model_dir, [{"prompt": "x", "chosen": "y"}])
    with pytest.raises(DataError, match="no rows"):
        preference_metrics(tiny_model_dir, [])
    with pytest.raises(DataError, match="no prompt"):
        preference_metrics(tiny_model_dir, [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"chosen: must be a string or a non-empty list of \{role, content\} messages"):
        preference_metrics(tiny_model_dir, [{"prompt": "x", "chosen": 3, "rejected": "b"}])


def test_missing_model_and_template(tmp_path, tiny_model_dir, prefs_test):
    with pytest.raises(ConfigError, match="no such model directory"):
        preference_metrics(str(tmp_path / "nope"), prefs_test[:1])
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match="no chat template"):
        preference_metrics(bare, prefs_test[:1])
    tmpl = (Path(tiny_model_dir) / "chat_template.jinja").read_text()
    assert preference_metrics(bare, prefs_test[:2], chat_template=tmpl)["n"] == 2


# ---------------------------------------------------------------------------------------------
# eval_loss


def test_eval_loss_scores_assistant_tokens_only(tiny_model_dir, sft_test):
    row = sft_test[0]
    logp, n_tok = _hand_logp(tiny_model_dir, row["messages"][0]["content"], row["messages"][1]["content"])
    got = eval_loss(tiny_model_dir, [row])
    assert got["tokens"] == n_tok and got["n"] == 1
    assert got["loss"] == pytest.approx(-logp / n_tok, abs=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(got["loss"]))


def test_eval_loss_multi_turn_and_system(tiny_model_dir):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name something."},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "Another."},
        {"role": "assistant", "content": "cat"},
    ]
    two = eval_loss(tiny_model_dir, [{"messages": msgs}])
    first = eval_loss(tiny_model_dir, [{"messages": msgs[:3]}])
    assert two["tokens"] > first["tokens"] >= 2
    # truncation keeps the start: only the first answer is left
    cut = eval_loss(tiny_model_dir, [{"messages": msgs}], max_length=_n_tokens(tiny_model_dir, msgs[:3]))
    assert cut["tokens"] == first["tokens"] and cut["loss"] == pytest.approx(first["loss"], abs=1e-5)
    with pytest.raises(DataError, match="no assistant turn"):
        eval_loss(tiny_model_dir, [{"messages": msgs[:2]}])
    with pytest.raises(DataError, match=r"row 0.*messages: must be a non-empty list of \{role, content\} messages"):
        eval_loss(tiny_model_dir, [{"text": "hi"}])


def _n_tokens(model_dir, msgs) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return len(tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"])


def test_eval_loss_drops_after_training(color_model, tiny_model_dir, tiny_assets, load_jsonl):
    colors_only = [{"messages": r["chosen"]} for r in load_jsonl(tiny_assets.prefs_test)]
    before = eval_loss(tiny_model_dir, colors_only, batch_size=5)
    after = eval_loss(color_model, colors_only, batch_size=5)
    assert before["tokens"] == after["tokens"] > 64
    assert after["loss"] < before["loss"] - 2.0
    assert before["loss"] > math.log(100)  # random init over a 512-token vocabulary


# ---------------------------------------------------------------------------------------------
# PEFT adapters


def test_adapter_dir_loads_base_plus_adapter(tiny_model_dir, prefs_test, sft_test, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, cfg)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)  # no tokenizer saved: it must come from the base
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model_dir
    merged = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(merged)

    rows = prefs_test[:8]
    via_adapter = preference_metrics(adapter, rows, ref_model_dir=tiny_model_dir)
    via_merged = preference_metrics(merged, rows, ref_model_dir=tiny_model_dir)
    plain = preference_metrics(tiny_model_dir, rows)
    for k in ("mean_chosen_logp", "mean_rejected_logp", "mean_reward_margin"):
        assert via_adapter[k] == pytest.approx(via_merged[k], abs=1e-3)
    assert abs(via_adapter["mean_chosen_logp"] - plain["mean_chosen_logp"]) > 1e-2  # the adapter is used
    assert eval_loss(adapter, sft_test[:4])["loss"] == pytest.approx(eval_loss(merged, sft_test[:4])["loss"], abs=1e-4)


def test_adapter_without_base_is_config_error(tmp_path, prefs_test):
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ConfigError, match="base_model_name_or_path"):
        preference_metrics(d, prefs_test[:1])
