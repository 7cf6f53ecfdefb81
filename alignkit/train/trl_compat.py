"""Where TRL keeps what alignkit trains with: the one module that knows TRL's import paths for trainers that
are not in TRL's top-level namespace, so that a TRL move is one edit here.

TRL 1.16 keeps ORPO (and CPO) in ``trl.experimental`` only (an open RFC may remove them later); importing from
there warns on every import (TRLExperimentalWarning), which is said once in alignkit's own docs instead. Tested
with TRL 1.16.0 (the pin); ``scripts/gen_trl_fields.py`` reads ORPOConfig's fields from here too.
"""

from __future__ import annotations

import warnings


def orpo():
    """(ORPOConfig, ORPOTrainer) of the installed TRL."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*trl\.experimental.*")
        try:
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        except ImportError:  # TRL before 0.2x kept it at the top level
            from trl import ORPOConfig, ORPOTrainer  # type: ignore[attr-defined,no-redef]
    return ORPOConfig, ORPOTrainer


def sft():
    """(SFTConfig, SFTTrainer): SFT and continued pretraining."""
    from trl import SFTConfig, SFTTrainer

    return SFTConfig, SFTTrainer
