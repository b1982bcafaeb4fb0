"""`interhandgen <cmd>` prints user-facing errors (InterHandGenError) as one line with status 2; bugs keep their
traceback."""

from __future__ import annotations

import pytest

from interhandgen import cli
from interhandgen.cli import hand_cmd
from interhandgen.exceptions import InputError, MissingFileError


@pytest.mark.parametrize("exc", [InputError("--out must end in .obj, got 'x'"), MissingFileError("no such file: y")])
def test_user_errors_print_one_line_and_return_2(monkeypatch, capsys, exc):
    def fail(args):
        raise exc

    monkeypatch.setattr(hand_cmd, "run", fail)
    assert cli.main(["hand", "--out", "x.obj"]) == 2
    assert capsys.readouterr().err == f"interhandgen hand: error: {exc}\n"


@pytest.mark.parametrize("exc", [ValueError("internal invariant"), FileNotFoundError("bug"), KeyError("k")])
def test_other_exceptions_are_bugs_and_propagate(monkeypatch, exc):
    def fail(args):
        raise exc

    monkeypatch.setattr(hand_cmd, "run", fail)
    with pytest.raises(type(exc)):
        cli.main(["hand", "--out", "x.obj"])
