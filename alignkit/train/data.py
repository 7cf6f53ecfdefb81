"""The data a training process trains on: the build the launcher mixed into the run dir, read as it is.

The launcher's preflight (alignkit.launch.preflight) mixes the data once into ``<output_dir>/alignkit/data/``
and records the build's manifest hash in the run file; every training process reads that build. A run file
written before builds were recorded (alignkit 0.1.0) names none: the data is then mixed here, as it was.
"""

from __future__ import annotations

from pathlib import Path

from alignkit.errors import DataError, Problem
from alignkit.launch.run.file import DataBuild, RunFile


def load_training_data(run: RunFile, state):
    """``datasets.DatasetDict`` with "train" (and "test" when the mixture has one), in the mixer's row format."""
    if run.data is None:
        from alignkit.data.mixer import load_mixture

        with state.main_process_first():
            return load_mixture(run.config.data, run.task)
    return load_build(run.data)


def load_build(ref: DataBuild):
    """The build ``ref`` names, after checking it is the one the launcher wrote (its manifest's sha256, every
    data file present with its recorded size)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    from alignkit.data.build import sha256_file, verify_build
    from alignkit.data.sources import MANIFEST, read_manifest

    directory = Path(ref.path)
    fix = "re-run the same `alignkit sft|dpo` command: it rebuilds the data and resumes"
    manifest_file = directory / MANIFEST
    if not manifest_file.is_file():
        raise DataError(Problem(str(directory), "the run's data build is missing (no manifest.json)", fix))
    if sha256_file(manifest_file) != ref.manifest_sha256:
        raise DataError(Problem(str(manifest_file), "is not the data build this run was planned with (its sha256 "
                                "differs from the run file's data.manifest_sha256)", fix))
    manifest = read_manifest(directory)
    if not verify_build(directory, manifest):
        raise DataError(Problem(str(directory), "the run's data build is damaged (a data file is missing or "
                                "changed size)", fix))
    splits = {}
    for name, info in manifest["splits"].items():
        parts = [pq.read_table(str(directory / f["file"])) for f in info["files"]]
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        derived = [c for c in manifest.get("derived_columns") or [] if c in table.column_names]
        if derived:
            table = table.drop_columns(derived)
        splits[name] = datasets.Dataset(InMemoryTable(table), split=datasets.NamedSplit(name))
    return datasets.DatasetDict(splits)
