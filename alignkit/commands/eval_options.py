"""The options of ``alignkit eval ...``, declared once (typer ``Annotated`` aliases).

``mt-bench`` and ``alpaca-eval`` share the model, generation, judge-endpoint and output options;
the offline commands (``prefs``, ``loss``, ``lm-eval``) share the data and batch options. An option
whose help or default differs between commands (``--judge-model``, ``--max-new-tokens``) is declared
where it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# -- the model and where results go ---------------------------------------------------------------------

ModelOpt = Annotated[str, typer.Option("--model", help="Model directory (full model or PEFT adapter); with --model-base-url, the served model's name.")]
ModelIdOpt = Annotated[Optional[str], typer.Option("--model-id", help="Name of the model in answer/judgment files (default: the directory's name).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Directory for answers, judgments and results.json (default: MODEL/eval/<benchmark>).")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N questions/instructions (smoke tests; the score is not the benchmark's).")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code/--no-trust-remote-code", help="Run code shipped with the model.")]
TemplateOpt = Annotated[Optional[str], typer.Option("--chat-template", help="Chat template override: a .jinja file or a built-in name (zephyr).")]

# -- generating answers (mt-bench, alpaca-eval) ---------------------------------------------------------

BackendOpt = Annotated[str, typer.Option("--backend", help="Generation backend: auto, transformers, endpoint, vllm (auto = endpoint when --model-base-url is given).")]
ModelUrlOpt = Annotated[Optional[str], typer.Option("--model-base-url", help="OpenAI-compatible base URL serving --model (e.g. http://127.0.0.1:8000/v1).")]
ModelKeyOpt = Annotated[Optional[str], typer.Option("--model-api-key-env", help="NAME of the environment variable holding the served model's API key.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Generation batch size (transformers backend).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on GPUs that have it, fp32 on CPU), bf16, fp16, fp32.")]
AttnOpt = Annotated[Optional[str], typer.Option("--attn-implementation", help="e.g. flash_attention_2, sdpa.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Sampling seed for generation.")]
AnswersOnlyOpt = Annotated[bool, typer.Option("--answers-only", help="Generate answers, skip judging.")]
RefreshOpt = Annotated[bool, typer.Option("--refresh-sources", help="Download URL sources again instead of using the cache under HF_HOME.")]

# -- the judge (and the served model's requests) -------------------------------------------------------

JudgeUrlOpt = Annotated[str, typer.Option("--judge-base-url", help="OpenAI-compatible base URL of the judge.")]
JudgeKeyOpt = Annotated[Optional[str], typer.Option("--judge-api-key-env", help="NAME of the environment variable holding the judge's API key (default: OPENAI_API_KEY for api.openai.com, none for other hosts). The key is never printed or saved.")]
ConcOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight at once (judge and served model).")]
RetryOpt = Annotated[int, typer.Option("--max-retries", min=0, help="Retries per request on 429/5xx/timeouts, with exponential backoff.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per HTTP request.")]

# -- offline metrics (prefs, loss, lm-eval) ------------------------------------------------------------

RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Use the test split of this recipe's data mixture.")]
ConfigOpt = Annotated[Optional[list[Path]], typer.Option("--config", "-c", help="Your run YAML (repeatable): its data mixture's test split.")]
PlainBatchOpt = Annotated[int, typer.Option("--batch-size", min=1)]
