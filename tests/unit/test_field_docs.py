"""The descriptions `alignkit sft|dpo --help` shows are the pydantic fields' own (snapshot is current)."""

from alignkit.config import docs
from tests.helpers import run_cli


def test_snapshot_matches_the_models():
    assert docs.load() == docs.build(), "run: python -m alignkit.config.docs"


def test_help_lists_the_keys_with_their_descriptions():
    # a bare environment: the help needs nothing from the user's
    out = run_cli("dpo", "--help", env={"PATH": "/usr/bin:/bin"}, env_extra={"COLUMNS": "200"}).stdout
    assert "train.beta:" in out and "launch.global_batch_size:" in out
    assert docs.build()["dpo"]["lora.r"] in out


def _urls():
    import json
    import re
    from pathlib import Path

    import alignkit.config as cfg

    root = Path(cfg.__file__).parent
    for name in ("field_docs.json", "trl_fields.json"):
        text = json.dumps(json.loads((root / name).read_text(encoding="utf-8")))
        for m in re.finditer(r"https?://[^\s\"'<>]*", text):
            yield name, m.group(0)


def test_every_url_in_the_field_docs_is_well_formed():
    import re
    from urllib.parse import urlsplit

    urls = list(_urls())
    assert any("huggingface.co/papers/2310.12036" in u for _, u in urls)  # beta's paper link
    for name, url in urls:
        url = url.split(")")[0] if "(" not in url else url  # a Markdown link ends at its ')'
        parts = urlsplit(url)
        assert parts.scheme == "https" and re.fullmatch(r"[a-z0-9.-]+\.[a-z]{2,}", parts.netloc), (name, url)
        assert not url.endswith((".", ",", ";", ":", "]")), (name, url)
        assert url.count("(") == url.count(")"), (name, url)


def test_config_fields_shows_a_markdown_link_whole():
    """rich markup ate `[paper]` of `[paper](https://...)`: the table showed `in the (https://...)`."""
    out = run_cli("config", "fields", "train", "--task", "dpo", "--search", "beta", env={"PATH": "/usr/bin:/bin"},
                  env_extra={"COLUMNS": "400"}).stdout
    assert "the paper (https://huggingface.co/papers/2310.12036)" in out, out
    assert "the (https://" not in out


def test_descriptions_are_cut_between_words_never_inside_a_url():
    from alignkit.commands.recipes import describe

    text = "see [the paper](https://example.org/a/very/long/path) " + "word " * 80
    assert describe(text).startswith("see the paper (https://example.org/a/very/long/path) word")
    cut = describe("x " * 140 + "https://example.org/abc")
    assert cut.endswith(" …") and "https://" not in cut
