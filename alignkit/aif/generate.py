"""``aif generate``: ``n`` completions per prompt from each model, appended to JSONL as they arrive.

* Local models load through ``alignkit.eval.generate`` (``TransformersGenerator``: the model's chat
  template, left-padded batches, adapter directories; or ``VLLMGenerator``) and sample here with
  the model's ``temperature``/``top_p``/``max_new_tokens`` (temperature below 1e-4 = greedy; other
  sampling settings come from the model's ``generation_config.json``). Each batch is seeded with
  ``derive_seed(seed, model id, first prompt id, first sample)``, so a batch re-run after an
  interruption samples the same way.
* Endpoints go through ``alignkit.eval.judge.ChatClient`` (bounded concurrency, retries, key read
  from the environment at request time), one request per sample.
* ``completions.jsonl`` is keyed by (prompt_id, model, sample): a re-run skips every key already
  there, so an interrupted run resumes and raising ``n`` only adds samples. A model's settings
  are recorded in ``aif.json``; re-using its id with other settings is refused (the samples would
  not be comparable).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from alignkit.aif.manifest import WorkDir, derive_seed, load_log
from alignkit.aif.models import ModelSpec, make_client
from alignkit.aif.progress import Reporter, quiet_hf
from alignkit.aif.prompts import Prompt
from alignkit.errors import Problem, UsageError

GREEDY_BELOW = 1e-4  # as alignkit.eval.generate (FastChat): below this temperature, greedy decoding
ENDPOINT_CHUNK = 256  # endpoint jobs handed to the client at a time (bounds memory on huge prompt lists)
VLLM_CHUNK = 1024


def completion_key(rec: dict) -> tuple:
    return (rec["prompt_id"], rec["model"], int(rec["sample"]))


@dataclass
class LocalOptions:
    batch_size: int = 8
    dtype: str = "auto"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    seed: int = 0


@dataclass
class EndpointOptions:
    concurrency: int = 8
    timeout: float = 600.0
    max_retries: int = 6


def check_settings(manifest: dict, models: list[ModelSpec]) -> None:
    """A model id already in the work dir must keep its location and sampling settings."""
    recorded = manifest.get("models") or {}
    problems = []
    for m in models:
        old = recorded.get(m.id)
        if not old:
            continue
        new = m.identity()
        diff = [k for k in new if old.get(k) != new[k]]
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} → {new[k]!r}" for k in diff)
            problems.append(
                Problem(
                    where=m.origin,
                    message=f"model {m.id!r} is already in this work directory with other settings ({shown})",
                    fix="give it another name (--model NAME=SPEC or id: in the models file), or use another --output",
                )
            )
    if problems:
        raise UsageError(problems, title="settings differ from the work directory's")


def _record(p: Prompt, model: ModelSpec, sample: int, text: str, finish: str | None, tokens: int | None) -> dict:
    return {
        "prompt_id": p.id,
        "model": model.id,
        "sample": sample,
        "prompt": p.text,
        "completion": text,
        "finish_reason": finish,
        "completion_tokens": tokens,
        "backend": model.backend,
        "sampling": model.sampling.as_json(),
        "tstamp": time.time(),
    }


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    return ids


def sample_local(gen, conversations: list[list[dict]], model: ModelSpec, seed: int) -> list[tuple[str, str, int]]:
    """(text, finish_reason, new tokens) per conversation, from a loaded ``TransformersGenerator``."""
    import torch

    tok, lm = gen.tokenizer, gen.model
    s = model.sampling
    texts = [gen.render(c) for c in conversations]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(lm.device) for k, v in enc.items()}
    kw: dict[str, Any] = {"max_new_tokens": int(s.max_new_tokens), "pad_token_id": tok.pad_token_id}
    if s.temperature < GREEDY_BELOW:
        kw["do_sample"] = False
    else:
        kw.update(do_sample=True, temperature=float(s.temperature), top_p=float(s.top_p))
    torch.manual_seed(seed)
    with torch.inference_mode():
        ids = lm.generate(**enc, **kw)
    new = ids[:, enc["input_ids"].shape[1] :].tolist()
    eos = _eos_ids(lm, tok)
    out = []
    for row in new:
        n, finish = len(row), "length"
        for i, t in enumerate(row):
            if t in eos:
                n, finish = i + 1, "stop"
                break
        text = tok.decode(row[:n], skip_special_tokens=True, spaces_between_special_tokens=False).strip()
        out.append((text, finish, n))
    return out


def _todo(prompts: list[Prompt], model: ModelSpec, log) -> list[tuple[Prompt, int]]:
    return [(p, s) for p in prompts for s in range(model.sampling.n) if (p.id, model.id, s) not in log]


def _run_local(model: ModelSpec, todo, log, opts: LocalOptions, reporter: Reporter) -> dict:
    from alignkit.eval.generate import TransformersGenerator
    from alignkit.eval.judge import chunks

    stats = {"new": 0, "tokens": 0, "truncated": 0}
    with quiet_hf():
        gen = TransformersGenerator(
            model.path,
            batch_size=opts.batch_size,
            dtype=opts.dtype,
            attn_implementation=opts.attn_implementation,
            trust_remote_code=opts.trust_remote_code,
            chat_template=model.chat_template,
            seed=opts.seed,
        )
    reporter.reset_clock()
    try:
        for batch in chunks(todo, opts.batch_size):
            seed = derive_seed(opts.seed, model.id, batch[0][0].id, batch[0][1])
            outs = sample_local(gen, [p.conversation() for p, _ in batch], model, seed)
            for (p, s), (text, finish, n) in zip(batch, outs):
                log.append(_record(p, model, s, text, finish, n))
                stats["new"] += 1
                stats["tokens"] += n
                stats["truncated"] += finish == "length"
            reporter.advance(len(batch), sum(o[2] for o in outs))
    finally:
        gen.close()
    return stats


def _run_vllm(model: ModelSpec, todo, log, opts: LocalOptions, reporter: Reporter) -> dict:
    from alignkit.eval.generate import VLLMGenerator
    from alignkit.eval.judge import chunks

    stats = {"new": 0, "tokens": 0, "truncated": 0}
    gen = VLLMGenerator(
        model.path, dtype=opts.dtype, trust_remote_code=opts.trust_remote_code, chat_template=model.chat_template, seed=opts.seed
    )
    from vllm import SamplingParams

    reporter.reset_clock()
    s = model.sampling
    greedy = s.temperature < GREEDY_BELOW
    try:
        for batch in chunks(todo, VLLM_CHUNK):
            params = [
                SamplingParams(
                    temperature=0.0 if greedy else float(s.temperature),
                    top_p=1.0 if greedy else float(s.top_p),
                    max_tokens=int(s.max_new_tokens),
                    seed=derive_seed(opts.seed, model.id, p.id, k) % (2**31),
                )
                for p, k in batch
            ]
            outs = gen.llm.chat(
                [p.conversation() for p, _ in batch], params, use_tqdm=False, lora_request=gen.lora,
                chat_template=gen.chat_template,
            )  # fmt: skip
            for (p, k), o in zip(batch, outs):
                c = o.outputs[0]
                n = len(c.token_ids)
                log.append(_record(p, model, k, c.text.strip(), c.finish_reason, n))
                stats["new"] += 1
                stats["tokens"] += n
                stats["truncated"] += c.finish_reason == "length"
                reporter.advance(1, n)
    finally:
        gen.close()
    return stats


def _run_endpoint(model: ModelSpec, todo, log, opts: EndpointOptions, reporter: Reporter, sleep=None) -> dict:
    from alignkit.eval.judge import chunks

    stats = {"new": 0, "tokens": 0, "truncated": 0}
    client = make_client(
        model.base_url or "", model.served_model or "", api_key_env=model.api_key_env, concurrency=opts.concurrency,
        timeout=opts.timeout, max_retries=opts.max_retries, what="model", sleep=sleep,
    )  # fmt: skip
    s = model.sampling
    greedy = s.temperature < GREEDY_BELOW
    request = {"temperature": 0.0 if greedy else float(s.temperature), "max_tokens": int(s.max_new_tokens)}
    if not greedy:
        request["top_p"] = float(s.top_p)

    def done(key, resp) -> None:
        p, k = key
        n = (resp.usage or {}).get("completion_tokens")
        n = n if isinstance(n, int) else None
        log.append(_record(p, model, k, resp.content.strip(), resp.finish_reason, n))
        stats["new"] += 1
        stats["tokens"] += n or 0
        stats["truncated"] += resp.finish_reason == "length"
        reporter.advance(1, n or 0)

    for batch in chunks(todo, ENDPOINT_CHUNK):
        jobs = [((p, k), {"messages": p.conversation(), **request, **model.request_params}) for p, k in batch]
        client.run(jobs, done)
    return stats


def generate_completions(
    prompts: list[Prompt],
    prompts_info: dict,
    models: list[ModelSpec],
    work: WorkDir,
    *,
    local: LocalOptions | None = None,
    endpoint: EndpointOptions | None = None,
    reporter: Reporter | None = None,
    sleep=None,
) -> dict:
    """Complete every (prompt, model, sample) not yet in ``work``; returns a summary per model."""
    local = local or LocalOptions()
    endpoint = endpoint or EndpointOptions()
    reporter = reporter or Reporter()
    work.path.mkdir(parents=True, exist_ok=True)
    manifest = work.read_manifest()
    check_settings(manifest, models)
    manifest.setdefault("models", {})
    for m in models:
        old_n = (manifest["models"].get(m.id) or {}).get("n", 0)
        rec = m.record()
        rec["n"] = max(int(old_n or 0), m.sampling.n)
        manifest["models"][m.id] = rec
    sources = manifest.setdefault("prompts", [])
    if not any(s.get("sha256") == prompts_info.get("sha256") and s.get("source") == prompts_info.get("source") for s in sources):
        sources.append(prompts_info)
    manifest["generate"] = {"local": asdict(local), "endpoint": asdict(endpoint)}
    work.write_manifest(manifest)  # settings first: a crash still leaves them recorded

    log = load_log(work.completions, completion_key)
    summary: dict[str, dict] = {}
    for m in models:
        if m.sampling.n > 1 and m.sampling.temperature < GREEDY_BELOW:
            reporter.note(f"note: {m.id} decodes greedily (temperature {m.sampling.temperature}): its {m.sampling.n} samples per prompt will be the same")
        todo = _todo(prompts, m, log)
        total = len(prompts) * m.sampling.n
        reporter.start(m.id, total=total, done=total - len(todo))
        t0 = time.monotonic()
        stats = {"new": 0, "tokens": 0, "truncated": 0}
        try:
            if todo:
                if m.kind == "endpoint":
                    stats = _run_endpoint(m, todo, log, endpoint, reporter, sleep=sleep)
                elif m.backend == "vllm":
                    stats = _run_vllm(m, todo, log, local, reporter)
                else:
                    stats = _run_local(m, todo, log, local, reporter)
        finally:
            reporter.finish()
        summary[m.id] = {
            "where": m.where,
            "requested": total,
            "already_done": total - len(todo),
            **stats,
            "seconds": round(time.monotonic() - t0, 3),
        }
    manifest = work.read_manifest()
    manifest["completions"] = len(log)
    counts: dict[str, int] = {}
    for (_pid, mid, _s) in log.records:
        counts[mid] = counts.get(mid, 0) + 1
    manifest["completions_per_model"] = counts
    work.write_manifest(manifest)
    return summary
