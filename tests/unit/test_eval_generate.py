"""Generation backends on the tiny local model: batched left-padded greedy decoding, adapters,
templates, and the backend choice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alignkit.errors import UsageError
from alignkit.eval import generate

CONVS = [
    [{"role": "user", "content": "Name something."}],
    [{"role": "user", "content": "Please: give me one word, a long sentence makes this prompt longer."}],
    [
        {"role": "user", "content": "Say a word."},
        {"role": "assistant", "content": "red"},
        {"role": "user", "content": "Another?"},
    ],
]


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    return generate.TransformersGenerator(tiny_model_dir, batch_size=8)


def test_batched_left_padded_greedy_equals_one_by_one(gen):
    assert gen.tokenizer.padding_side == "left"
    batched = gen.generate(CONVS, temperature=0.0, max_new_tokens=12)
    single = [gen.generate([c], temperature=0.0, max_new_tokens=12)[0] for c in CONVS]
    assert batched == single
    assert all(isinstance(t, str) for t in batched)
    # the chat template renders the whole conversation, ending with the generation prompt
    rendered = gen.render(CONVS[2])
    assert rendered.count("<|user|>") == 2 and "red" in rendered and rendered.rstrip().endswith("<|assistant|>")


def test_sampling_is_seeded(tiny_model_dir, gen):
    a = gen.generate(CONVS[:1], temperature=0.7, max_new_tokens=12)
    b = gen.generate(CONVS[:1], temperature=0.7, max_new_tokens=12)
    assert a == b  # the seed is reset per call


def test_adapter_dir_loads_base_plus_adapter(tmp_path, tiny_model_dir, gen):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)  # adapter_config.json names the base directory
    assert (adapter / "adapter_config.json").is_file()
    g = generate.TransformersGenerator(str(adapter))
    assert g.model.__class__.__name__.startswith("Peft")
    merged = peft_model.merge_and_unload().eval()
    ids = g.tokenizer(g.render(CONVS[0]), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        assert torch.allclose(g.model(**ids).logits, merged(**ids).logits, atol=1e-5)
        assert not torch.allclose(g.model(**ids).logits, gen.model(**ids).logits, atol=1e-3)


def test_chat_template_override_and_missing(tmp_path, tiny_model_dir):
    assert "<|assistant|>" in generate.resolve_chat_template("zephyr")
    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    assert generate.resolve_chat_template(str(f)).startswith("{% for")
    assert generate.resolve_chat_template("{{ 'x' }}") == "{{ 'x' }}"
    with pytest.raises(UsageError) as e:
        generate.resolve_chat_template("no-such-template")
    assert "zephyr" in str(e.value)
    # a model without a chat template is refused with the fix
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(UsageError) as e:
        generate.TransformersGenerator(str(bare))
    assert "--chat-template" in str(e.value)
    g = generate.TransformersGenerator(str(bare), chat_template=str(f))
    assert g.render(CONVS[0]) == "[Name something.]"


def test_backend_choice(tmp_path, tiny_model_dir):
    with pytest.raises(UsageError) as e:
        generate.make_generator(tiny_model_dir, backend="endpoint")
    assert "--model-base-url" in str(e.value)
    with pytest.raises(UsageError):
        generate.make_generator(tiny_model_dir, backend="transformers", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(UsageError) as e:
        generate.make_generator(str(tmp_path / "missing"), backend="auto")
    assert "not a local model directory" in str(e.value)
    ep = generate.make_generator(tiny_model_dir, base_url="http://127.0.0.1:1/v1")
    assert ep.backend == "endpoint" and ep.client.model == tiny_model_dir
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError) as e:
            generate.make_generator(tiny_model_dir, backend="vllm")
        assert "vLLM is not installed" in str(e.value)
