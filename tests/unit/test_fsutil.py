import os
import stat

from alignkit.fsutil import write_atomic


def test_atomic_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "status.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "status.json").stat().st_mode) == 0o644


def test_results_json_keeps_text_and_refuses_what_json_cannot_hold(tmp_path):
    import json
    import math

    import pytest

    from alignkit.fsutil import write_json_atomic

    class Num:  # a numpy/torch scalar
        def item(self):
            return 0.5

    p = tmp_path / "results.json"
    write_json_atomic(p, {"answer": "日本語 🚀", "x": Num()}, ensure_ascii=False, strict=True)
    assert p.read_text(encoding="utf-8") == '{\n  "answer": "日本語 🚀",\n  "x": 0.5\n}\n'
    write_json_atomic(p, {"answer": "é"})  # the default: ASCII escapes, anything else as str()
    assert p.read_text() == '{\n  "answer": "\\u00e9"\n}\n'
    with pytest.raises(ValueError):
        write_json_atomic(p, {"x": math.nan}, strict=True)
    with pytest.raises(TypeError):
        write_json_atomic(p, {"x": object()}, strict=True)
    assert json.loads(p.read_text()) == {"answer": "é"}  # a refused write leaves the old file


def test_building_dir_replaces_the_target_whole_or_leaves_it_as_it_was(tmp_path):
    import pytest

    from alignkit.fsutil import building_dir

    out = tmp_path / "build"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with building_dir(out) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".build.tmp-")
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]  # the temp dir is gone
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with building_dir(out, tag="x") as tmp:
        assert tmp.name.startswith(".build.x-")
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]  # neither temp nor the old one is left
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755  # an ordinary directory, not mkdtemp's 0700
