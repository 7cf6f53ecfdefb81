#!/usr/bin/env python
"""How close `alignkit plan` comes to measured peak memory (CPU), and its activation formula to autograd.

    python bench/bench_plan_accuracy.py [--steps 6] [--max-length 256] [--batch 16] [--json PATH]

Two models, each trained through `alignkit sft --recipe tiny --profile cpu` with packing (so every row is
max_length tokens, the planner's worst case) and planned with the same overrides through
`alignkit.commands.plan.plan_request` (alignkit.memory's planner, the run resolved as `alignkit plan` does):

* tiny  the demo model (hidden 64, 2 layers, ~70k parameters): the runtime dominates
* 50M   a Llama with hidden 512, 6 layers, MLP 1408, vocab 32000, untied (~52M parameters), built locally

Measured: the training worker's peak RSS (VmHWM from /proc). Reported: predicted vs measured per model and
the relative error, and the same for the difference between the two models (the Python/torch runtime cancels
out, what is left is what the planner models: weights, gradients, Adam states, activations, the LM head).
Also: the activation formula against the bytes autograd saves for Llama layers of a few shapes (saved-tensor
hooks), the measurement the formula's coefficients come from. Exits 0 unless a run fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, PeakRSS, child_env, demo_assets, gib, log, machine, run, workdir, write_json  # noqa: E402

BIG = dict(hidden_size=512, num_hidden_layers=6, intermediate_size=1408, num_attention_heads=8,
           num_key_value_heads=8, vocab_size=32000, tie_word_embeddings=False, max_position_embeddings=2048)


def build_50m(work: Path, tokenizer_dir: Path) -> Path:
    out = work / "model-50m"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**BIG, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id))
    tmp = work / ".model-50m.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    tmp.rename(out)
    return out


def overrides(model_dir: Path, out: Path, args) -> list[str]:
    return [f"--model_name_or_path={model_dir}", f"--output_dir={out}", f"--max_steps={args.steps}",
            "--eval_strategy=no", "--save_strategy=no", "--report_to=none", "--packing=true",
            f"--max_length={args.max_length}", f"--per_device_train_batch_size={args.batch}",
            "--gradient_accumulation_steps=1", "--launch.global_batch_size=null", "--logging_steps=1"]


def predicted(ov: list[str]) -> tuple[float, float, dict]:
    from alignkit.commands.plan import plan_request
    from alignkit.memory import GIB, PlanRequest, estimate

    plan = plan_request(PlanRequest(task="sft", recipe="tiny", profile="cpu", overrides=tuple(ov)), suggest=False)
    bare = estimate(plan.setup, overhead=False)
    return plan.total_gib, bare.static / GIB + bare.dynamic / GIB, plan.estimate.breakdown_gib()


def calibrate() -> list[dict]:
    """Saved-tensor bytes per decoder layer and token (autograd) vs the planner's formula."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignkit.memory import Arch, Setup, activation_bytes

    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        for h, inter, heads, kv, mask in ((128, 344, 4, 4, False), (256, 688, 8, 2, False), (256, 1024, 8, 8, True),
                                          (512, 1376, 8, 8, False)):
            saved = []
            for layers in (1, 3):
                torch.manual_seed(0)
                model = LlamaForCausalLM(LlamaConfig(hidden_size=h, intermediate_size=inter, num_hidden_layers=layers,
                                                     num_attention_heads=heads, num_key_value_heads=kv, vocab_size=128,
                                                     attn_implementation="sdpa")).to(dtype).train()
                ids = torch.randint(0, 128, (2, 64))
                am = torch.ones(2, 64, dtype=torch.long)
                am[0, -16:] = 0
                params = {p.untyped_storage().data_ptr() for p in model.parameters()}
                seen: dict[int, int] = {}

                def pack(t, seen=seen, params=params):
                    st = t.untyped_storage()
                    if st.data_ptr() not in params:
                        seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
                    return t

                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    model.model(input_ids=ids, attention_mask=am if mask else None, use_cache=False)
                saved.append(sum(seen.values()))
            measured = (saved[1] - saved[0]) / 2 / 128
            arch = Arch(hidden=h, layers=1, intermediate=inter, vocab=128, heads=heads, kv_heads=kv)
            s = Setup(task="sft", arch=arch, dtype_bytes=dtype.itemsize, micro_batch=2, max_length=64, padded=mask,
                      device="cpu", activation_checkpointing=False)
            formula = (activation_bytes(Setup(**{**s.__dict__, "arch": Arch(**{**arch.__dict__, "layers": 2})}), False)
                       - activation_bytes(s, False)) / 128
            rows.append({"dtype": str(dtype).replace("torch.", ""), "hidden": h, "mlp": inter, "heads": heads,
                         "kv_heads": kv, "padding_mask": mask, "measured_bytes_per_token_layer": measured,
                         "formula": formula, "error": (formula - measured) / measured})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", dest="json_path", default=None)
    args = ap.parse_args()

    work = workdir("plan-accuracy", args.workdir)
    env = child_env(work)
    import os

    os.environ["ALIGNKIT_CACHE"] = env["ALIGNKIT_CACHE"]  # the planner reads the demo model from the same cache
    assets = demo_assets(env)
    models = {"tiny": assets.model_dir, "50M": build_50m(work, assets.model_dir)}
    results = {}
    for name, model_dir in models.items():
        out = work / f"run-{name}"
        shutil.rmtree(out, ignore_errors=True)
        ov = overrides(model_dir, out, args)
        total, bare, breakdown = predicted(ov)
        with PeakRSS(str(out)) as rss:
            run([PY, "-m", "alignkit", "sft", "--recipe", "tiny", "--profile", "cpu", *ov], env, timeout=3600)
        peaks = rss.matching("-m alignkit.train.sft", exclude="accelerate launch")
        measured = gib(max(peaks))
        results[name] = {"model_dir": str(model_dir), "predicted_gib": round(total, 3),
                         "predicted_without_runtime_gib": round(bare, 3), "measured_peak_rss_gib": round(measured, 3),
                         "error": round((total - measured) / measured, 4), "breakdown_gib": breakdown}
        log(f"  {name:5s} predicted {total:.3f} GiB  measured {measured:.3f} GiB  error {results[name]['error']:+.1%}")
    d_pred = results["50M"]["predicted_gib"] - results["tiny"]["predicted_gib"]
    d_meas = results["50M"]["measured_peak_rss_gib"] - results["tiny"]["measured_peak_rss_gib"]
    delta = {"predicted_gib": round(d_pred, 3), "measured_gib": round(d_meas, 3),
             "error": round((d_pred - d_meas) / d_meas, 4) if d_meas > 0 else None}
    log("activation formula vs autograd's saved tensors...")
    cal = calibrate()
    result = {"benchmark": "plan_accuracy", "settings": {"steps": args.steps, "max_length": args.max_length,
              "batch": args.batch, "packing": True, "profile": "cpu"}, "results": results,
              "difference_50m_minus_tiny": delta, "activation_formula": cal, "machine": machine()}
    write_json(args.json_path, result)

    print(f"plan accuracy (CPU, fp32, packing, {args.batch} x {args.max_length} tokens per step, {args.steps} steps)")
    print(f"{'model':12s} {'predicted GiB':>13s} {'measured GiB':>12s} {'error':>7s}")
    for name, r in results.items():
        print(f"{name:12s} {r['predicted_gib']:13.3f} {r['measured_peak_rss_gib']:12.3f} {r['error']:+7.1%}")
    err = f"{delta['error']:+7.1%}" if delta["error"] is not None else "    n/a"
    print(f"{'50M - tiny':12s} {delta['predicted_gib']:13.3f} {delta['measured_gib']:12.3f} {err}")
    worst = max(abs(r["error"]) for r in cal)
    print(f"activation formula vs saved tensors: {len(cal)} layer shapes, worst error {worst:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
