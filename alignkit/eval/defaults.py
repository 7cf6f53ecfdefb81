"""Where the benchmarks' public files live. A module of constants only, so the CLI can show them as
defaults in --help without importing the evaluation code."""

FASTCHAT_RAW = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"
MTBENCH_QUESTIONS = f"{FASTCHAT_RAW}/mt_bench/question.jsonl"
MTBENCH_REFERENCES = f"{FASTCHAT_RAW}/mt_bench/reference_answer/gpt-4.jsonl"
MTBENCH_JUDGE_PROMPTS = f"{FASTCHAT_RAW}/judge_prompts.jsonl"
MTBENCH_JUDGE_MODEL = "gpt-4"

AE_RAW = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/src/alpaca_eval/evaluators_configs"
ALPACA_JUDGE_PROMPT = f"{AE_RAW}/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt"
ALPACA_JUDGE_MODEL = "gpt-4-1106-preview"
