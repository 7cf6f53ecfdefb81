"""`alignkit eval lm-eval`: lm-evaluation-harness offline on a local task file (the optional extra)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from alignkit.commands.eval import app
from alignkit.errors import UsageError

TASK = """task: alignkit_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""


def test_lm_eval_on_a_local_task(tmp_path, tiny_model_dir):
    try:
        import lm_eval  # noqa: F401
    except ImportError:  # without the extra, the command says how to get it
        res = CliRunner().invoke(app, ["lm-eval", "--model", tiny_model_dir, "--tasks", "x"])
        assert isinstance(res.exception, UsageError) and "alignkit[eval]" in str(res.exception)
        return
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"question": f"Q{i}:", "choices": ["red", "cat"], "answer": i % 2}) + "\n"
                            for i in range(6)))  # fmt: skip
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny.yaml").write_text(TASK.format(data=data))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["lm-eval", "--model", tiny_model_dir, "--tasks", "alignkit_tiny_mc",
                                   "--include-path", str(tasks), "--output", str(out), "--batch-size", "4"])  # fmt: skip
    assert res.exit_code == 0, (res.stdout, res.exception)
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "lm-eval" and saved["tasks"] == ["alignkit_tiny_mc"]
    acc = saved["results"]["alignkit_tiny_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and acc * 6 == round(acc * 6)  # a fraction of the 6 questions
