"""`interhandgen view` command line: argument checks and the export path (no browser)."""

from __future__ import annotations

import re

import pytest

from interhandgen.cli import main


@pytest.fixture()
def tiny(tmp_path, crafted_pairs):
    return crafted_pairs([[0.12, 0.0, 0.0], [0.3, 0.0, 0.0], [0.2, 0.05, 0.0]]).save(tmp_path / "tiny.npz")


def test_export_writes_a_page_of_the_first_samples(tmp_path, tiny, capsys):
    path = tiny
    out = tmp_path / "page.html"
    assert main(["view", str(path), "--export", str(out), "--export-num", "2"]) == 0
    text = out.read_text()
    assert "tiny.npz: 2 of 3 samples" in text
    assert len(re.findall(r'"text":"Sample \d of 3', text)) == 2
    assert "wrote" in capsys.readouterr().out


def test_bad_arguments_are_reported(tmp_path, tiny, capsys):
    path = tiny
    assert main(["view", str(path), "--export", str(tmp_path / "page.png")]) == 2
    assert "--export" in capsys.readouterr().err
    assert main(["view", str(path), "--export-num", "3"]) == 2
    assert "--export-num is used only with --export" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # the parser's positive_int refuses it
        main(["view", str(path), "--export", str(tmp_path / "p.html"), "--export-num", "0"])
    assert exc.value.code == 2
    assert main(["view", str(tmp_path / "missing.npz")]) == 2
    assert not (tmp_path / "p.html").exists()
