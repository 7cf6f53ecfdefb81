"""Supervised fine-tuning, as the recipe reads: seed, data, tokenizer, model, trainer, train, save.

Started by accelerate in every process:  python -m alignkit.train.sft --run <output_dir>/alignkit/run.yaml
(`alignkit sft` writes the run file and the launch command.) TRL's SFTTrainer does the training.
"""

from __future__ import annotations

import logging
import sys

from alignkit.train import checkpoints, common, loading

logger = logging.getLogger("alignkit.sft")


def main(argv: list[str] | None = None) -> int:
    run = common.load_run(common.parse_args(argv), "sft")
    cfg = run.config
    stopper = checkpoints.Stopper()

    from trl import SFTTrainer, SFTConfig

    ###############
    # Training args (created first: under ZeRO-3 they tell from_pretrained to shard while loading)
    ###############
    args = loading.trainer_args(run, SFTConfig)
    state = common.start_processes(run, args)  # process group (gloo on CPU, nccl on GPUs), seed, logging

    ###############
    # Output dir: resume from the last complete checkpoint
    ###############
    resume_from = common.prepare_output_dir(run, state, logger)

    ###############
    # Data
    ###############
    from alignkit.train.data import load_training_data

    mixture = load_training_data(run.file, state)  # the build the launcher mixed into the run dir

    ###############
    # Tokenizer and chat template
    ###############
    base_path = cfg.model.model_name_or_path
    tokenizer = loading.load_tokenizer(run, base_path)

    from alignkit.data.chat import to_trl

    datasets = to_trl(mixture, "sft", cfg.data, tokenizer.chat_template)

    ###############
    # Model (full, LoRA, or 4-bit + LoRA)
    ###############
    model = loading.load_model(base_path, run)
    peft_config = loading.peft_config(run)

    ###############
    # Trainer
    ###############
    trainer = SFTTrainer(
        model=model,
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
    # Evaluate
    ###############
    common.evaluate(trainer)

    ###############
    # Save model, tokenizer, chat template, model card
    ###############
    common.save(run, trainer, tokenizer, state, base_model=base_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
