"""Output paths: suffix, folder/file kind, writability and output == input are refused before any work."""

from __future__ import annotations

import os
import stat

import pytest

from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.io_guard import Out, check_outputs, same_path, user_os_errors

from _rel_util import assert_clean_error, run_cli, tiny_set


@pytest.fixture
def given(tmp_path):
    path = tmp_path / "g.npz"
    tiny_set().save(path)
    return path


def _bytes(path):
    return path.read_bytes()


@pytest.mark.parametrize("argv, fragment", [
    (["sample", "--num", "2", "--out", "a.npz", "--render", "a.npz"], "--render must end in .png"),
    (["sample", "--num", "2", "--out", "a.png", "--render", "a.png"], "--out must end in .npz"),
    (["sample", "--num", "2", "--out", "x.np"], "--out must end in .npz"),
    (["sample", "--num", "2", "--out", "a.npz", "--meshes", "a.npz"], "--out and --meshes are the same path"),
    (["data", "synth", "--num", "2", "--out", "x.npy"], "--out must end in .npz"),
    (["hand", "--out", "h.stl"], "--out must end in .obj or .ply or .glb"),
    (["hand", "--out", "h.obj", "--png", "h.jpg"], "--png must end in .png"),
    (["view", "s.npz", "--export", "page.txt"], "--export must end in .html or .htm"),
])
def test_wrong_suffix_refused_before_work(tmp_path, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(argv, capsys)
    assert_clean_error(rc, err, fragment)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_output_equal_to_input_is_refused_and_input_kept(tmp_path, given, capsys):
    before = _bytes(given)
    cases = [
        (["render", "--samples", given, "--out", given], "--out"),
        (["complete", "--given", given, "--side", "left", "--out", given], "is the input --given"),
        (["complete", "--given", given, "--side", "left", "--out", tmp_path / "c.npz", "--render", given],
         "--render must end in .png"),
        (["data", "convert", "--format", "arctic", given, "--out", given], "is the input input"),
        (["data", "stats", given, "--out", given], "is not a folder"),
        (["evaluate", "--samples", given, "--reference", given, "--out", given], "is not a folder"),
        (["view", given, "--export", given], "--export must end in .html"),
        (["evaluate", "--samples", given, "--reference", given, "--floor", tmp_path / "fl", "--out", tmp_path / "fl"],
         "is the input --floor"),
    ]
    for argv, fragment in cases:
        rc, err = run_cli(argv, capsys)
        assert_clean_error(rc, err, fragment)
        assert _bytes(given) == before
    # The same file through a symlink and a hard link is still the input.
    link = tmp_path / "link.npz"
    link.symlink_to(given)
    hard = tmp_path / "hard.npz"
    os.link(given, hard)
    for alias in (link, hard):
        rc, err = run_cli(["complete", "--given", given, "--side", "left", "--out", alias], capsys)
        assert_clean_error(rc, err, "is the input --given")
    assert _bytes(given) == before
    # The exported page may not replace the file named as --reference either.
    page = tmp_path / "page.html"
    page.write_text("kept")
    rc, err = run_cli(["view", given, "--reference", page, "--export", page], capsys)
    assert_clean_error(rc, err, "is the input --reference")
    assert page.read_text() == "kept"


def test_two_outputs_on_one_path(tmp_path):
    with pytest.raises(InputError, match="--a and --b are the same path"):
        check_outputs({"--a": Out(tmp_path / "x.png", (".png",)), "--b": Out(tmp_path / "sub/../x.png", (".png",))})


def test_unwritable_and_wrong_kind_paths(tmp_path, capsys):
    folder = tmp_path / "d.npz"
    folder.mkdir()
    a_file = tmp_path / "report"
    a_file.write_text("x")
    page_folder = tmp_path / "page.html"
    page_folder.mkdir()
    cases = [
        (["sample", "--num", "2", "--out", "/sys/a.npz"], "cannot write in /sys"),
        (["sample", "--num", "2", "--out", folder], "is an existing folder"),
        (["sample", "--num", "2", "--out", a_file / "x.npz"], "is not a folder"),
        (["data", "stats", tmp_path / "missing.npz", "--out", a_file], "exists and is not a folder"),
        (["train", "--config", "c.yaml", "--data", "d.npz", "--out", a_file], "exists and is not a folder"),
        (["evaluator", "train", "--data", "d.npz", "--out", a_file], "exists and is not a folder"),
        (["view", tmp_path / "missing.npz", "--export", "/sys/page.html"], "cannot write in /sys"),
        (["view", tmp_path / "missing.npz", "--export", page_folder], "is an existing folder"),
    ]
    for argv, fragment in cases:
        rc, err = run_cli(argv, capsys)
        assert_clean_error(rc, err, fragment)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        rc, err = run_cli(["sample", "--num", "2", "--out", ro / "a.npz"], capsys)
        assert_clean_error(rc, err, "cannot write in")
    finally:
        ro.chmod(stat.S_IRWXU)


def test_probe_leaves_nothing_behind(tmp_path):
    check_outputs({"--out": Out(tmp_path / "new" / "deeper" / "x.npz", (".npz",)),
                   "--folder": Out(tmp_path / "f", folder=True)})
    assert list(tmp_path.iterdir()) == []  # the probe file is removed and no folder is created


def test_same_path():
    assert same_path("a/../b.npz", "b.npz")
    assert not same_path("a.npz", "b.npz")


def test_os_errors_become_clean_errors(tmp_path):
    with pytest.raises(InputError, match="Is a directory"):
        with user_os_errors():
            open(tmp_path, "wb")
    with pytest.raises(MissingFileError, match="nope"):
        with user_os_errors():
            open(tmp_path / "nope" / "x", "rb")
    with pytest.raises(InputError, match="No space left"):
        with user_os_errors():
            raise OSError(28, "No space left on device", str(tmp_path / "x.npz"))
    with pytest.raises(OSError):  # an OS error without a path is not the user's: it stays a bug
        with user_os_errors():
            raise OSError(5, "Input/output error")


def test_existing_output_file_is_replaced_atomically_with_umask(tmp_path, given):
    out = tmp_path / "copy.npz"
    out.write_bytes(b"old")
    old_mask = os.umask(0o027)
    try:
        tiny_set(seed=1).save(out)
    finally:
        os.umask(old_mask)
    assert out.read_bytes() != b"old"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
