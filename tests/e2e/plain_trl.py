"""A plain TRL script: the baseline alignkit's golden-loss test compares against.

No alignkit import: the model, tokenizer and data are loaded the way TRL's own examples do, and the
trainer gets exactly the settings passed on the command line.

    python plain_trl.py sft|dpo MODEL_DIR TRAIN_JSONL OUTPUT_DIR SETTINGS_JSON
"""

import json
import sys

import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer


def main() -> None:
    task, model_dir, train_file, output_dir, settings = sys.argv[1:6]
    settings = json.loads(settings)
    config_cls, trainer_cls = (SFTConfig, SFTTrainer) if task == "sft" else (DPOConfig, DPOTrainer)
    args = config_cls(output_dir=output_dir, **settings)
    set_seed(args.seed)
    train = load_dataset("json", data_files=train_file, split="train")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    trainer = trainer_cls(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    trainer.save_state()


if __name__ == "__main__":
    main()
