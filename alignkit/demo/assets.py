"""The embedded demo: a tiny model, its tokenizer and a learnable data set, built locally.

Nothing is downloaded. ``ensure_demo_assets()`` builds everything in about a second the first time
and caches it; later calls only check the version stamp.

Layout under ``demo_root()`` (``$ALIGNKIT_CACHE/demo/v1``, else ``~/.cache/alignkit/demo/v1``)::

    model/                      a Llama-style model + tokenizer, loadable with
                                AutoModelForCausalLM / AutoTokenizer.from_pretrained
        config.json  generation_config.json  model.safetensors
        tokenizer.json  tokenizer_config.json  chat_template.jinja   (Zephyr template)
    data/sft_train.jsonl        SFT rows, ultrachat_200k's shape: prompt, prompt_id, messages
    data/sft_test.jsonl
    data/prefs_train.jsonl      preference rows, ultrafeedback_binarized's shape:
    data/prefs_test.jsonl       prompt (str), prompt_id, chosen, rejected (full message lists that
                                include the user turn), score_chosen, score_rejected
    ASSETS.json                 version stamp, written last: its presence means the build is complete

Recipes refer to these as ``demo:model``, ``demo:data/sft_train.jsonl`` and so on;
``demo_path("model")`` turns such a name into an absolute path.

The task is built so that SFT teaches the *format* but not the *preference*, and DPO teaches the
preference: every prompt asks for a word ("Name something.", in many phrasings); SFT answers are
colors and animals in equal measure, so after SFT a color and an animal are about equally likely
(~50 % preference accuracy); preference pairs always choose a color over an animal.
"""

from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from alignkit.config.demo_paths import (  # noqa: F401 - where the assets live (config expands `demo:` paths)
    ASSET_NAMES,
    DEMO_VERSION,
    MODEL_DIR,
    PREFS_TEST,
    PREFS_TRAIN,
    SFT_TEST,
    SFT_TRAIN,
    demo_path,
    demo_root,
)
from alignkit.errors import Problem, RuntimeFailure
from alignkit.fsutil import building_dir
from alignkit.modeling import quiet_progress

#: bump when the content of a v1 build changes in a way old caches must not be reused
BUILD_FORMAT = 1
SEED = 1234

STAMP_FILE = "ASSETS.json"

N_SFT_TRAIN = 320
N_SFT_TEST = 64
N_PREFS_TRAIN = 320
N_PREFS_TEST = 64

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
VOCAB_SIZE = 512  # upper bound for the BPE trainer; the small corpus stops earlier

# The model: tiny on purpose (about 70k parameters).
MODEL_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    intermediate_size=128,
    max_position_embeddings=1024,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    initializer_range=0.02,
)
MODEL_MAX_LENGTH = 1024

COLORS = (
    "red", "blue", "green", "yellow", "orange", "purple", "pink", "brown",
    "black", "white", "gray", "teal", "violet", "indigo", "crimson", "maroon",
    "beige", "cyan", "magenta", "gold", "silver", "navy", "olive", "amber",
)  # fmt: skip
ANIMALS = (
    "cat", "dog", "horse", "cow", "sheep", "goat", "lion", "tiger",
    "bear", "wolf", "fox", "deer", "rabbit", "mouse", "eagle", "owl",
    "duck", "frog", "shark", "whale", "zebra", "camel", "monkey", "otter",
)  # fmt: skip
PHRASINGS = (
    "Name something.", "Say a word.", "Give me one word.", "Tell me a word.",
    "Name a thing.", "Pick a word.", "Say something.", "Name one thing.",
    "Give me a word, please.", "What word comes to mind?", "Answer with one word.",
    "Think of a word.", "Any word will do.", "Give me an example of something.",
    "Write a single word.", "Reply with just one word.", "One word, please.",
    "Can you name something?", "Tell me one thing.", "Say any word you like.",
)  # fmt: skip
OPENERS = ("", "Please: ", "Quick! ", "Hey. ", "Now, ", "Okay. ")


@dataclass(frozen=True)
class DemoAssets:
    """Where the built demo assets are. All paths are absolute."""

    root: Path
    model_dir: Path
    sft_train: Path
    sft_test: Path
    prefs_train: Path
    prefs_test: Path
    built: bool = False  # True when this call built them (False: taken from the cache)

    @classmethod
    def at(cls, root: Path, built: bool = False) -> "DemoAssets":
        return cls(
            root=root,
            model_dir=root / MODEL_DIR,
            sft_train=root / SFT_TRAIN,
            sft_test=root / SFT_TEST,
            prefs_train=root / PREFS_TRAIN,
            prefs_test=root / PREFS_TEST,
            built=built,
        )


# ---------------------------------------------------------------------------------------------
# paths (pure: no heavy imports, nothing built)




# ---------------------------------------------------------------------------------------------
# data (pure Python, deterministic given the seed)


def _prompts() -> list[str]:
    return [o + p for p in PHRASINGS for o in OPENERS]


def _split_prompts(rng: random.Random) -> tuple[list[str], list[str]]:
    """Train and held-out prompt phrasings: held-out rows use wordings never seen in training."""
    prompts = _prompts()
    rng.shuffle(prompts)
    n_test = len(prompts) // 5
    return prompts[n_test:], prompts[:n_test]


def _sft_rows(rng: random.Random, prompts: list[str], n: int, tag: str) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = rng.choice(prompts)
        # exactly half colors, half animals: SFT must not teach the preference
        answer = rng.choice(COLORS if i % 2 == 0 else ANIMALS)
        rows.append(
            {
                "prompt": prompt,
                "prompt_id": f"{tag}-{i:04d}",
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ],
            }
        )
    rng.shuffle(rows)
    return rows


def _pref_rows(rng: random.Random, prompts: list[str], n: int, tag: str) -> list[dict]:
    rows = []
    for i in range(n):
        prompt = rng.choice(prompts)
        user = {"role": "user", "content": prompt}
        color, animal = rng.choice(COLORS), rng.choice(ANIMALS)
        rows.append(
            {
                "prompt": prompt,
                "prompt_id": f"{tag}-{i:04d}",
                "chosen": [user, {"role": "assistant", "content": color}],
                "rejected": [dict(user), {"role": "assistant", "content": animal}],
                "score_chosen": float(rng.choice((8, 9, 10))),
                "score_rejected": float(rng.choice((1, 2, 3))),
            }
        )
    return rows


def demo_rows(seed: int = SEED) -> dict[str, list[dict]]:
    """All demo data rows, keyed by asset name. Deterministic given ``seed``."""
    rng = random.Random(seed)
    train_prompts, test_prompts = _split_prompts(rng)
    return {
        SFT_TRAIN: _sft_rows(rng, train_prompts, N_SFT_TRAIN, "sft-train"),
        SFT_TEST: _sft_rows(rng, test_prompts, N_SFT_TEST, "sft-test"),
        PREFS_TRAIN: _pref_rows(rng, train_prompts, N_PREFS_TRAIN, "prefs-train"),
        PREFS_TEST: _pref_rows(rng, test_prompts, N_PREFS_TEST, "prefs-test"),
    }


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# tokenizer and model (heavy imports inside)


def _chat_template() -> str:
    return (Path(__file__).resolve().parent.parent / "data" / "templates" / "zephyr.jinja").read_text(
        encoding="utf-8"
    )


def _render_zephyr(messages: list[dict]) -> str:
    """The Zephyr rendering, for the tokenizer's training corpus only."""
    return "".join(f"<|{m['role']}|>\n{m['content']}{EOS}\n" for m in messages)


def _build_tokenizer(corpus: list[str], out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
    )
    fast.chat_template = _chat_template()
    fast.save_pretrained(str(out_dir))
    return fast


def _build_model(tokenizer, out_dir: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_CONFIG,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=16,
    )
    with quiet_progress():
        model.save_pretrained(str(out_dir), safe_serialization=True)


def _build(tmp_root: Path, seed: int) -> None:
    rows = demo_rows(seed)
    for name, data in rows.items():
        _write_jsonl(tmp_root / name, data)
    corpus: list[str] = []
    for r in rows[SFT_TRAIN] + rows[SFT_TEST]:
        corpus.append(_render_zephyr(r["messages"]))
    for r in rows[PREFS_TRAIN] + rows[PREFS_TEST]:
        corpus.append(_render_zephyr(r["chosen"]))
        corpus.append(_render_zephyr(r["rejected"]))
    corpus.append(_render_zephyr([{"role": "system", "content": "You are a helpful assistant."}]))
    model_dir = tmp_root / MODEL_DIR
    tokenizer = _build_tokenizer(corpus, model_dir)
    _build_model(tokenizer, model_dir, seed)
    stamp = {
        "demo_version": DEMO_VERSION,
        "build_format": BUILD_FORMAT,
        "seed": seed,
        "assets": list(ASSET_NAMES),
        "vocab_size": len(tokenizer),
    }
    (tmp_root / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# cache


def _is_complete(root: Path, seed: int) -> bool:
    try:
        stamp = json.loads((root / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stamp.get("build_format") != BUILD_FORMAT or stamp.get("seed") != seed:
        return False
    needed = [root / n for n in ASSET_NAMES[1:]] + [
        root / MODEL_DIR / f
        for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    ]
    return all(p.is_file() for p in needed)


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive inter-process lock (so two ranks of one run build the assets once)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps the cache consistent
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure_demo_assets(root: Path | None = None, *, force: bool = False, seed: int = SEED) -> DemoAssets:
    """Build the demo assets once (atomically) and return where they are.

    The build goes into a temporary directory next to ``root`` which is then renamed into place,
    so a reader sees either nothing or a complete build. ``force=True`` rebuilds even when a
    complete build is cached.
    """
    root = Path(root).expanduser().absolute() if root is not None else demo_root()
    if not force and _is_complete(root, seed):
        return DemoAssets.at(root)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RuntimeFailure(
            Problem(
                where=str(root.parent),
                message=f"cannot create the demo cache directory: {e.strerror or e}",
                fix="set ALIGNKIT_CACHE to a writable directory",
            )
        ) from e
    with _lock(root.parent / f".{root.name}.lock"):
        if not force and _is_complete(root, seed):  # built by someone else while we waited
            return DemoAssets.at(root)
        try:
            with building_dir(root, tag="build") as tmp:
                _build(tmp, seed)
        except OSError as e:
            raise RuntimeFailure(
                Problem(
                    where=str(root),
                    message=f"building the demo assets failed: {e}",
                    fix="check free disk space and permissions, or set ALIGNKIT_CACHE elsewhere",
                )
            ) from e
    return DemoAssets.at(root, built=True)
