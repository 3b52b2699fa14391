"""The README's Python API example runs as written (in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds one runnable example"
    return blocks[0]


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_api_example(), str(README), "exec"), namespace)  # noqa: S102
    synth, ledger, train = namespace["synth"], namespace["ledger"], namespace["train"]
    assert synth.epsilon_ <= 3.0
    assert ledger.summary(train.source.fingerprint).charges == 1
    assert (tmp_path / "synthetic-fhir" / "manifest.json").is_file()
    assert namespace["report"].report_html.is_file()
    assert set(namespace["fake"].patients["sex"]) == {"female"}
    out = capsys.readouterr().out
    assert f"model {synth.model_.sha256[:12]}" in out
