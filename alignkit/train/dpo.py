"""Direct preference optimization, as the recipe reads: seed, data, tokenizer, policy + reference,
trainer, train, save.

Started by accelerate in every process:  python -m alignkit.train.dpo --run <output_dir>/alignkit/run.yaml

The reference model:
* LoRA / QLoRA: the policy with its adapter disabled — no second copy in memory;
* full fine-tuning: TRL's own frozen copy of the starting model, or none with
  train.precompute_ref_log_probs (log-probs computed once before training).
An SFT adapter as the starting point is merged into its base first (see loading.start_model).
"""

from __future__ import annotations

import logging
import sys

from alignkit.train import checkpoints, common, loading

logger = logging.getLogger("alignkit.dpo")


def main(argv: list[str] | None = None) -> int:
    run = common.load_run(common.parse_args(argv), "dpo")
    cfg = run.config
    stopper = checkpoints.Stopper()

    from trl import DPOConfig, DPOTrainer

    ###############
    # Training args (created first: under ZeRO-3 they tell from_pretrained to shard while loading)
    ###############
    args = loading.trainer_args(run, DPOConfig)
    state = common.start_processes(run, args)  # process group (gloo on CPU, nccl on GPUs), seed, logging

    ###############
    # Output dir: resume from the last complete checkpoint
    ###############
    resume_from = common.prepare_output_dir(run, state, logger)

    ###############
    # Data: prompt / chosen / rejected conversations
    ###############
    from alignkit.train.data import load_training_data

    mixture = load_training_data(run.file, state)  # the build the launcher mixed into the run dir

    ###############
    # Tokenizer and chat template (the SFT output's own, saved with it)
    ###############
    tokenizer = loading.load_tokenizer(run, cfg.model.model_name_or_path)

    from alignkit.data.chat import to_trl

    datasets = to_trl(mixture, "dpo", cfg.data, tokenizer.chat_template)

    ###############
    # Policy (an SFT adapter is merged into its base first) and reference
    ###############
    policy_path, described = loading.start_model(run, state)
    logger.info("policy starts from %s", described)
    model = loading.load_model(policy_path, run)
    peft_config = loading.peft_config(run)
    ref_model = None  # LoRA: adapter-disabled policy; full: TRL's copy (or precomputed log-probs)

    ###############
    # Trainer
    ###############
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=datasets["train"],
        eval_dataset=datasets.get("test") if args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=checkpoints.callbacks(stopper),
    )

    ###############
    # Train (SIGTERM/SIGUSR1: save a checkpoint and stop)
    ###############
    if not common.train(run, trainer, state, stopper, resume_from, logger):
        return 0

    ###############
    # Evaluate (reward accuracy and margins on the held-out pairs)
    ###############
    common.evaluate(trainer)

    ###############
    # Save model or adapter, tokenizer, chat template, model card
    ###############
    common.save(run, trainer, tokenizer, state, base_model=described)
    return 0


if __name__ == "__main__":
    sys.exit(main())
