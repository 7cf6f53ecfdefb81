"""Odds-ratio preference optimization, as the recipe reads: seed, data, tokenizer, model, trainer, train, save.

Started by accelerate in every process:  python -m alignkit.train.orpo --run <output_dir>/alignkit/run.yaml

ORPO (Hong et al. 2024) adds an odds-ratio penalty on the rejected answer to the SFT loss on the chosen one: one
step from a base model to a chat model, on DPO's prompt / chosen / rejected pairs, with no reference model (so
no second copy in memory, nothing precomputed). TRL 1.16 keeps its ORPOTrainer under trl.experimental; the import
is in alignkit.train.trl_compat only.
"""

from __future__ import annotations

import logging
import sys

from alignkit.train import checkpoints, common, loading, trl_compat

logger = logging.getLogger("alignkit.orpo")


def main(argv: list[str] | None = None) -> int:
    run = common.load_run(common.parse_args(argv), "orpo")
    cfg = run.config
    stopper = checkpoints.Stopper()

    ORPOConfig, ORPOTrainer = trl_compat.orpo()

    ###############
    # Training args (created first: under ZeRO-3 they tell from_pretrained to shard while loading)
    ###############
    args = loading.trainer_args(run, ORPOConfig, remove_unused_columns=False)  # its collator needs them (TRL sets it anyway)
    state = common.start_processes(run, args)  # process group (gloo on CPU, nccl on GPUs), seed, logging

    ###############
    # Output dir: resume from the last complete checkpoint
    ###############
    resume_from = common.prepare_output_dir(run, state, logger)

    ###############
    # Data: prompt / chosen / rejected conversations (DPO's format)
    ###############
    from alignkit.train.data import load_training_data

    mixture = load_training_data(run.file, state)  # the build the launcher mixed into the run dir

    ###############
    # Tokenizer and chat template (ORPO trains the chat format from the base model: the config's template)
    ###############
    tokenizer = loading.load_tokenizer(run, cfg.model.model_name_or_path)

    from alignkit.data.chat import to_trl

    datasets = to_trl(mixture, "orpo", cfg.data, tokenizer.chat_template)

    ###############
    # Model (full, LoRA, or 4-bit + LoRA); an SFT adapter as the start is merged into its base first
    ###############
    model_path, described = loading.start_model(run, state)
    logger.info("model starts from %s", described)
    model = loading.load_model(model_path, run)
    peft_config = loading.peft_config(run)

    ###############
    # Trainer (no reference model)
    ###############
    trainer = ORPOTrainer(
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
    # Evaluate (reward accuracy, log-odds ratio on the held-out pairs)
    ###############
    common.evaluate(trainer)

    ###############
    # Save model or adapter, tokenizer, chat template, model card
    ###############
    common.save(run, trainer, tokenizer, state, base_model=described)
    return 0


if __name__ == "__main__":
    sys.exit(main())
