"""The run contract between the launcher and the training processes.

    layout.py  where everything of a run lies (RunDir: run.yaml, status, lock, env, checkpoint markers, ...);
               cheap to import (no pydantic, no config), so `alignkit slurm status/logs` use it too
    file.py    what run.yaml holds (RunFile: the typed config, the data build), loaded by the child in one call

The layout's names are re-exported here: ``from alignkit.launch.run import RunDir``.
"""

from alignkit.launch.run.layout import (  # noqa: F401
    ACCELERATE_FILE,
    CHECKPOINT_MARKER,
    COMMAND_FILE,
    DATA_DIR,
    DEEPSPEED_FILE,
    ENV_FILE,
    LOCK_FILE,
    MERGED_DIR,
    MODEL_FILE,
    RUN_FILE,
    RUN_SUBDIR,
    STATUS_FILE,
    RunDir,
    is_complete,
    mark_complete,
    read_status,
    run_dir,
)
