"""Continued pretraining, as the recipe reads: seed, data, tokenizer, model, trainer, train, save.

Started by accelerate in every process:  python -m alignkit.train.cpt --run <output_dir>/alignkit/run.yaml

Plain text (the build's `text` column, read from the source's data.text_column: the handbook's text_column)
in TRL's language-modelling format: SFTTrainer with dataset_text_field, every token trained, packed into
train.max_length sequences by default (config/defaults/cpt.yaml). No chat template is applied to the data; the
tokenizer keeps (or gets) one so that the saved model can be fine-tuned and served as the others.
"""

from __future__ import annotations

import logging
import sys

from alignkit.train import checkpoints, common, loading, trl_compat

logger = logging.getLogger("alignkit.cpt")


def main(argv: list[str] | None = None) -> int:
    run = common.load_run(common.parse_args(argv), "cpt")
    cfg = run.config
    stopper = checkpoints.Stopper()

    SFTConfig, SFTTrainer = trl_compat.sft()

    ###############
    # Training args (created first: under ZeRO-3 they tell from_pretrained to shard while loading)
    ###############
    args = loading.trainer_args(run, SFTConfig, dataset_text_field="text")  # the build's text column
    state = common.start_processes(run, args)  # process group (gloo on CPU, nccl on GPUs), seed, logging

    ###############
    # Output dir: resume from the last complete checkpoint
    ###############
    resume_from = common.prepare_output_dir(run, state, logger)

    ###############
    # Data: one text column
    ###############
    from alignkit.train.data import load_training_data

    mixture = load_training_data(run.file, state)  # the build the launcher mixed into the run dir

    from alignkit.data.chat import to_trl

    datasets = to_trl(mixture, "cpt", cfg.data, "")

    ###############
    # Tokenizer
    ###############
    base_path = cfg.model.model_name_or_path
    tokenizer = loading.load_tokenizer(run, base_path)

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
    # Evaluate (loss and perplexity-style token accuracy on the held-out text)
    ###############
    common.evaluate(trainer)

    ###############
    # Save model, tokenizer, model card
    ###############
    common.save(run, trainer, tokenizer, state, base_model=base_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
