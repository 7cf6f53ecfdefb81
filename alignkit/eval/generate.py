"""Answer generation backends: local ``transformers``, an OpenAI-compatible endpoint, or vLLM.

All three take conversations (lists of ``{"role", "content"}``) and render them with the model's
own chat template; temperature 0 means greedy decoding.

* ``TransformersGenerator``: batched ``generate`` with left padding; the template is rendered as
  text and tokenized without special tokens (the template decides about BOS, as in training).
  ``model_dir`` may be a PEFT adapter directory: its base (``base_model_name_or_path``) is loaded
  and the adapter put on top; a base that is itself an adapter is merged first.
* ``EndpointGenerator``: a served model (``--model-base-url``); requests go through ``ChatClient``
  with the model name exactly as given (``transformers serve DIR`` wants ``DIR``).
* ``VLLMGenerator``: ``vllm.LLM.chat`` when vLLM is installed (adapters via ``LoRARequest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from alignkit.errors import ConfigError, Problem, RuntimeFailure, UsageError
from alignkit.modeling import adapter_base, has_tokenizer, is_adapter_dir
from alignkit.client import ChatClient, ChatResponse, chunks

Messages = list[dict[str, Any]]
GREEDY_BELOW = 1e-4  # FastChat: temperature < 1e-4 → do_sample=False
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "data" / "templates"
BACKENDS = ("auto", "transformers", "endpoint", "vllm")


@dataclass(frozen=True)
class Decoding:
    """How to decode, as every backend reads it: temperature below 1e-4 is greedy (FastChat's rule)."""

    temperature: float
    max_new_tokens: int

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW


class Generator:
    """What the backends share: ``generate`` takes conversations and returns one answer each, in their
    order and stripped of surrounding white space; a backend implements ``_answer`` (raw texts).

    The evaluation loops need only ``backend``, ``generate(...)`` and ``close()``: any object with
    those (a test double) works in place of a backend.
    """

    backend = "?"

    def generate(
        self,
        conversations: list[Messages],
        *,
        temperature: float,
        max_new_tokens: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        texts = self._answer(conversations, Decoding(float(temperature), int(max_new_tokens)), on_progress)
        return [t.strip() for t in texts]

    def _answer(
        self, conversations: list[Messages], decoding: Decoding, on_progress: Callable[[int], None] | None
    ) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def resolve_chat_template(spec: str | None) -> str | None:
    """A Jinja template from a path, a built-in name (``zephyr``) or a literal string."""
    if spec is None or spec == "":
        return None
    p = Path(spec).expanduser()
    if p.is_file():
        return p.read_text(encoding="utf-8")
    builtin = TEMPLATES_DIR / f"{spec}.jinja"
    if builtin.is_file():
        return builtin.read_text(encoding="utf-8")
    if "{%" in spec or "{{" in spec:
        return spec
    names = sorted(x.stem for x in TEMPLATES_DIR.glob("*.jinja"))
    raise UsageError(
        Problem(
            where="--chat-template",
            message=f"{spec!r} is neither a file, a built-in template nor a Jinja string",
            fix="give a .jinja file or one of: " + ", ".join(names),
        )
    )


def _pick_device_dtype(dtype: str):
    import torch

    cuda = torch.cuda.is_available()
    if dtype in ("auto", "", None):
        if cuda:
            return "cuda", (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        return "cpu", torch.float32
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}  # fmt: skip
    if dtype not in table:
        raise UsageError(Problem(where="--dtype", message=f"unknown dtype {dtype!r}", fix="use auto, bf16, fp16 or fp32"))
    return ("cuda" if cuda else "cpu"), table[dtype]


def load_for_generation(
    model_dir: str,
    *,
    dtype: str = "auto",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    chat_template: str | None = None,
):
    """(model, tokenizer, device) ready for batched generation (eval mode, left padding)."""
    import torch  # noqa: F401 - heavy, here on purpose
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, torch_dtype = _pick_device_dtype(dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device == "cuda":
        kwargs["device_map"] = "auto"

    chain = [model_dir]  # adapter dirs down to the full base model
    while is_adapter_dir(chain[-1]):
        chain.append(adapter_base(chain[-1]))
        if len(chain) > 8:
            raise ConfigError(Problem(where=model_dir, message="adapter chain longer than 8 (a cycle?)"))
    tok_src = next((c for c in chain if has_tokenizer(c)), chain[-1])

    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_src, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(chain[-1], **kwargs)
    except (OSError, ValueError) as e:
        # a local dir that does not load (no weights, no tokenizer, damaged files) is an input to fix: exit 2
        raise (ConfigError if Path(chain[-1]).is_dir() else RuntimeFailure)(
            Problem(
                where=chain[-1],
                message=f"cannot load the model: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                fix="give a local model directory (or an adapter directory whose base is available)",
            )
        ) from None
    if len(chain) > 1:
        from peft import PeftModel

        emb = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > emb:  # SFT added tokens (chat format): the adapter was trained on a resized model
            model.resize_token_embeddings(len(tokenizer))
        for i, adapter in enumerate(reversed(chain[:-1])):
            model = PeftModel.from_pretrained(model, adapter)
            if i < len(chain) - 2:  # an adapter that is itself the base of another: merge it in
                model = model.merge_and_unload()
    if device == "cpu":
        model = model.to("cpu")
    model.eval()

    template = resolve_chat_template(chat_template)
    if template is not None:
        tokenizer.chat_template = template
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(
            Problem(
                where=model_dir,
                message="the tokenizer has no chat template",
                fix="pass --chat-template (a .jinja file or a built-in name such as zephyr)",
            )
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device


class TransformersGenerator(Generator):
    backend = "transformers"

    def __init__(
        self,
        model_dir: str,
        *,
        batch_size: int = 8,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        chat_template: str | None = None,
        seed: int = 0,
    ):
        self.model, self.tokenizer, self.device = load_for_generation(
            model_dir,
            dtype=dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            chat_template=chat_template,
        )
        self.batch_size = max(1, int(batch_size))
        self.seed = seed

    def render(self, conversation: Messages) -> str:
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    def new_tokens(self, conversations: list[Messages], decoding: Decoding, *, top_p: float | None = None):
        """One left-padded batch through ``model.generate``: the new token ids, one row per conversation
        (padding after an end-of-sequence token included). ``top_p`` is passed only when sampling and given."""
        import torch

        tok = self.tokenizer
        enc = tok([self.render(c) for c in conversations], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        gen: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "pad_token_id": tok.pad_token_id,
                               "do_sample": not decoding.greedy}  # fmt: skip
        if not decoding.greedy:
            gen["temperature"] = decoding.temperature
            if top_p is not None:
                gen["top_p"] = top_p
        with torch.inference_mode():
            ids = self.model.generate(**enc, **gen)
        return ids[:, enc["input_ids"].shape[1] :]

    def _answer(self, conversations: list[Messages], decoding: Decoding, on_progress) -> list[str]:
        import torch

        out: list[str] = []
        torch.manual_seed(self.seed)
        for batch in chunks(conversations, self.batch_size):
            new = self.new_tokens(batch, decoding)
            out.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True, spaces_between_special_tokens=False))
            if on_progress is not None:
                on_progress(len(batch))
        return out

    def close(self) -> None:
        self.model = None


class EndpointGenerator(Generator):
    backend = "endpoint"

    def __init__(self, client: ChatClient):
        self.client = client

    def _answer(self, conversations: list[Messages], decoding: Decoding, on_progress) -> list[str]:
        results: dict[int, str] = {}

        def done(i, resp: ChatResponse) -> None:
            results[i] = resp.content

        jobs = [
            (i, {"messages": c, "temperature": decoding.temperature, "max_tokens": decoding.max_new_tokens})
            for i, c in enumerate(conversations)
        ]
        self.client.run(jobs, done, on_progress=(lambda: on_progress(1)) if on_progress else None)
        return [results[i] for i in range(len(conversations))]


class VLLMGenerator(Generator):
    backend = "vllm"

    def __init__(
        self,
        model_dir: str,
        *,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        chat_template: str | None = None,
        seed: int = 0,
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise UsageError(
                Problem(where="--backend vllm", message="vLLM is not installed", fix="pip install vllm, or use --backend transformers")
            ) from None
        self.lora = None
        base = model_dir
        if is_adapter_dir(model_dir):
            from vllm.lora.request import LoRARequest

            base = adapter_base(model_dir)
            if is_adapter_dir(base):
                raise UsageError(
                    Problem(
                        where=model_dir,
                        message="vLLM serves one adapter on a full base; this adapter's base is an adapter too",
                        fix="merge the inner adapter into its base first, or use --backend transformers",
                    )
                )
            self.lora = LoRARequest("adapter", 1, str(model_dir))
        vllm_dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype)
        self.llm = LLM(
            model=base,
            tokenizer=model_dir if has_tokenizer(model_dir) else base,
            dtype=vllm_dtype,
            trust_remote_code=trust_remote_code,
            seed=seed,
            enable_lora=self.lora is not None,
        )
        self.chat_template = resolve_chat_template(chat_template)

    def _answer(self, conversations: list[Messages], decoding: Decoding, on_progress) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=0.0 if decoding.greedy else decoding.temperature, max_tokens=decoding.max_new_tokens
        )
        outs = self.llm.chat(
            conversations, params, use_tqdm=False, lora_request=self.lora, chat_template=self.chat_template
        )
        if on_progress is not None:
            on_progress(len(conversations))
        return [o.outputs[0].text for o in outs]

    def close(self) -> None:
        self.llm = None


def make_generator(
    model: str,
    *,
    backend: str = "auto",
    base_url: str | None = None,
    api_key_env: str | None = None,
    batch_size: int = 8,
    concurrency: int = 8,
    timeout: float = 600.0,
    max_retries: int = 6,
    dtype: str = "auto",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    chat_template: str | None = None,
    seed: int = 0,
) -> Generator:
    """The generator for ``backend`` (``auto``: the endpoint when ``base_url`` is given, else transformers)."""
    if backend not in BACKENDS:
        raise UsageError(Problem(where="--backend", message=f"unknown backend {backend!r}", fix="one of " + ", ".join(BACKENDS)))
    if backend == "auto":
        backend = "endpoint" if base_url else "transformers"
    if backend == "endpoint":
        if not base_url:
            raise UsageError(Problem(where="--model-base-url", message="the endpoint backend needs --model-base-url"))
        if chat_template:
            raise UsageError(
                Problem(where="--chat-template", message="a served model applies its own template", fix="set it on the server")
            )
        client = ChatClient(base_url, model, api_key_env=api_key_env, require_key=bool(api_key_env),
                            concurrency=concurrency, timeout=timeout, max_retries=max_retries, what="model")
        return EndpointGenerator(client)
    if base_url:
        raise UsageError(
            Problem(where="--model-base-url", message=f"not used by --backend {backend}", fix="drop it or use --backend endpoint")
        )
    if not Path(model).is_dir():
        raise UsageError(
            Problem(where="--model", message=f"{model}: not a local model directory", fix="give the output dir of a run")
        )
    if backend == "vllm":
        return VLLMGenerator(model, dtype=dtype, trust_remote_code=trust_remote_code, chat_template=chat_template, seed=seed)
    return TransformersGenerator(
        model,
        batch_size=batch_size,
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        chat_template=chat_template,
        seed=seed,
    )
