"""AI feedback: SFT and preference data from a list of prompts, the Zephyr way.

The three steps of Zephyr (dSFT, AIF, dDPO) need two datasets the handbook only consumes:

* dSFT data: a teacher's answer to every prompt → ``messages`` rows (``alignkit aif distill``);
* AIF data: completions from several models (``aif generate``), rated by a judge model on a 1–5
  scale per aspect (``aif judge``), turned into one (chosen, rejected) pair per prompt
  (``aif binarize``) in ultrafeedback_binarized's format.

``generate`` and ``judge`` work in a *work directory* of append-only JSONL logs (resumable: a re-run
skips what is done, so no paid call is made twice); ``binarize`` and ``distill`` write a
``DatasetDict`` directory (``save_to_disk``, written to a temp dir and renamed into place) with a
``manifest.json``, which ``alignkit sft``/``dpo`` read as ``{path: DIR, split: train_prefs}``.

Modules: ``models`` (which models, how they sample), ``prompts`` (loading), ``generate``,
``judge``, ``binarize``, ``distill``, ``manifest`` (work dir, hashes, atomic dataset writes),
``progress`` (the reporter interface the CLI draws bars with). Importing this package is cheap.
"""
