"""What sft.py and dpo.py share: the run file they were started with, and the stages both recipes go through
(world check, output dir, train, evaluate, save). Loading is in train/loading.py, checkpoints in
train/checkpoints.py, what a run writes besides the model in train/outputs.py.

Runs inside every training process that accelerate starts. Nothing here trains: TRL's trainers do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignkit.launch.run import RunDir
from alignkit.launch.run.file import RunFile
from alignkit.train.checkpoints import Stopper, clean_incomplete_checkpoints, resume_checkpoint
from alignkit.train.outputs import (
    dataset_names,
    finalize_model,
    push_to_hub,
    write_env,
    write_model_card,
    write_model_summary,
    write_status,
)

# --------------------------------------------------------------------------- the run file


@dataclass
class Run:
    """The run file this process was started with, and where it lies."""

    path: Path
    file: RunFile

    @property
    def config(self):  # the task's RunConfig
        return self.file.config

    @property
    def output_dir(self) -> Path:
        return self.file.output_dir

    @property
    def layout(self) -> RunDir:
        return self.file.layout


def parse_args(argv: list[str] | None = None) -> Path:
    import argparse

    parser = argparse.ArgumentParser(description="alignkit training entry point (started by accelerate)")
    parser.add_argument("--run", required=True, type=Path, help="<output_dir>/alignkit/run.yaml")
    return parser.parse_args(argv).run


def load_run(path: Path, task: str) -> Run:
    return Run(path=path, file=RunFile.load(path, task))


def start_processes(run: Run, args):
    """The process group the training args set up (gloo on CPU, nccl on GPUs), checked against the launch plan;
    the seed set; logging from the main process only. Returns accelerate's PartialState."""
    import logging

    from accelerate import PartialState
    from transformers import set_seed

    state = PartialState()
    check_world_size(run, state)
    set_seed(args.seed)
    logging.basicConfig(level=logging.INFO if state.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return state


def check_world_size(run: Run, state) -> None:
    """Every process must see the world the launcher planned: a mismatch means the processes would each
    train alone on the same output dir (e.g. MULTI_GPU on a machine without CUDA and without use_cpu)."""
    planned = run.file.world_size
    if planned and state.num_processes != planned:
        raise RuntimeError(
            f"alignkit planned {planned} processes but this one sees a world of {state.num_processes} "
            f"({state.distributed_type}); refusing to train so that processes do not overwrite each other"
        )


def prepare_output_dir(run: Run, state, logger) -> str | None:
    """Drop half-written checkpoints, record the environment; return the checkpoint to resume from."""
    if state.is_main_process:
        for p in clean_incomplete_checkpoints(run.output_dir):
            logger.warning("removed incomplete checkpoint %s (its writer was killed)", p)
        write_env(run, state)
    state.wait_for_everyone()
    resume_from = resume_checkpoint(run)
    if resume_from:
        logger.info("resuming from %s", resume_from)
    return resume_from


def train(run: Run, trainer, state, stopper: Stopper, resume_from: str | None, logger) -> bool:
    """trainer.train(); False when a signal stopped it (a checkpoint was saved and the status says so)."""
    if state.is_main_process:
        logger.info("model: %s", write_model_summary(run, trainer))
        write_status(run, "running")
    result = trainer.train(resume_from_checkpoint=resume_from)
    if stopper.requested is not None:
        if state.is_main_process:
            write_status(run, "preempted", global_step=trainer.state.global_step, checkpoint=resume_checkpoint(run))
        logger.warning("stopped by signal %s after saving a checkpoint; re-run to resume", stopper.requested)
        return False
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    return True


def evaluate(trainer) -> None:
    if trainer.eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)


def save(run: Run, trainer, tokenizer, state, base_model: str) -> None:
    """The final model or adapter with tokenizer and chat template, model card, optional Hub push."""
    finalize_model(trainer, tokenizer)
    trainer.save_model(str(run.output_dir))
    if state.is_main_process:
        tokenizer.save_pretrained(str(run.output_dir))
        write_model_card(trainer, run, base_model, dataset_names(run))
        if run.config.train.push_to_hub:
            push_to_hub(run)
        write_status(run, "completed", global_step=trainer.state.global_step)
    state.wait_for_everyone()
