"""`interhandgen view` command line: argument checks and the export path (no browser)."""

from __future__ import annotations

import re

import numpy as np

from interhandgen.cli import main
from interhandgen.data.format import TwoHandSet


def _tiny(tmp_path):
    n = 3
    zeros = lambda d: np.zeros((n, d))  # noqa: E731
    right_t = np.array([[0.12, 0.0, 0.0], [0.3, 0.0, 0.0], [0.2, 0.05, 0.0]])
    pairs = TwoHandSet(dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=zeros(3)),
                       dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=right_t),
                       pose_space="pca", flat_hand_mean=False)
    return pairs.save(tmp_path / "tiny.npz")


def test_export_writes_a_page_of_the_first_samples(tmp_path, capsys):
    path = _tiny(tmp_path)
    out = tmp_path / "page.html"
    assert main(["view", str(path), "--export", str(out), "--export-num", "2"]) == 0
    text = out.read_text()
    assert "tiny.npz: 2 of 3 samples" in text
    assert len(re.findall(r'"text":"Sample \d of 3', text)) == 2
    assert "wrote" in capsys.readouterr().out


def test_bad_arguments_are_reported(tmp_path, capsys):
    path = _tiny(tmp_path)
    assert main(["view", str(path), "--export", str(tmp_path / "page.png")]) == 2
    assert "--export" in capsys.readouterr().err
    assert main(["view", str(path), "--export-num", "3"]) == 2
    assert "--export-num is used only with --export" in capsys.readouterr().err
    assert main(["view", str(path), "--export", str(tmp_path / "p.html"), "--export-num", "0"]) == 2
    assert main(["view", str(tmp_path / "missing.npz")]) == 2
    assert not (tmp_path / "p.html").exists()
