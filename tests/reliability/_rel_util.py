"""Shared helpers of the reliability tests: tiny inputs and an in-process CLI run."""

from __future__ import annotations

import numpy as np

from interhandgen.cli import main
from interhandgen.data.format import HandParams, TwoHandSet


def tiny_set(n: int = 3, seed: int = 0, **kw) -> TwoHandSet:
    """An open-hand set of ``n`` pairs 12 cm apart (PCA poses), float32."""
    rng = np.random.default_rng(seed)

    def hand(x: float) -> HandParams:
        transl = np.zeros((n, 3)) + [x, 0.0, 0.0]
        return HandParams(pose=rng.normal(0, 0.5, (n, 45)).astype(np.float32),
                          betas=rng.normal(0, 0.5, (n, 10)).astype(np.float32),
                          global_orient=rng.normal(0, 0.3, (n, 3)).astype(np.float32),
                          transl=transl.astype(np.float32))

    return TwoHandSet(hand(-0.06), hand(0.06), pose_space="pca", flat_hand_mean=False, hand_model="open_hand", **kw)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``interhandgen argv`` run in this process; a traceback would raise here. An argument
    refused by the parser (argparse exits) gives its exit code and its error line, without the usage text."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
        lines = capsys.readouterr().err.splitlines()
        errors = [i for i, line in enumerate(lines) if line.startswith("interhandgen ")]
        return rc, "\n".join(lines[errors[0]:] if errors else lines)
    err = capsys.readouterr().err
    return rc, err


def assert_clean_error(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    assert err.startswith("interhandgen "), err
    for f in fragments:
        assert str(f) in err, (f, err)
