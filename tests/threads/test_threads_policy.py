"""The CPU thread policy: OMP_WAIT_POLICY before torch loads, --threads on every command, clear errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

import interhandgen.cli as cli
from interhandgen import threads
from interhandgen.cli._args import positive_int
from interhandgen.cli._threads import before_torch, threads_in_argv
from interhandgen.exceptions import InputError

POLICY_ENVS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE")


@pytest.fixture(autouse=True)
def _clean_policy_env(monkeypatch):
    for k in POLICY_ENVS:
        monkeypatch.delenv(k, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _leaves(parser: argparse.ArgumentParser, prefix=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, prefix + (name,))


def _minimal_argv(path, parser) -> list[str]:
    """Values for the required options of a leaf parser (the command itself is replaced by a recorder)."""
    argv = list(path)
    for group in parser._mutually_exclusive_groups:
        if group.required:
            argv += [group._group_actions[0].option_strings[0], "x"]
    for action in parser._actions:
        if action.required and action.option_strings:
            value = str(action.choices[0]) if action.choices else ("1" if action.type in (int, positive_int) else "x")
            argv += [action.option_strings[0], value]
        elif not action.option_strings and action.nargs not in ("?", "*"):
            argv.append("x")
    return argv


def _run_main(monkeypatch, argv):
    """cli.main(argv) with every command's function replaced by one that records the thread state it sees."""
    seen = {}
    real_build = cli.build_parser

    def build():
        parser = real_build()
        for _, leaf in _leaves(parser):
            leaf.set_defaults(func=lambda args: seen.update(threads=torch.get_num_threads(),
                                                            policy=os.environ.get("OMP_WAIT_POLICY"),
                                                            spin=os.environ.get("GOMP_SPINCOUNT")) or 0)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)
    code = cli.main(argv)
    return code, seen


def test_every_command_accepts_threads_and_gets_the_policy(monkeypatch):
    monkeypatch.setattr(threads, "runnable_others", lambda: 99)  # a busy machine: PASSIVE for every count > 1
    leaves = list(_leaves(cli.build_parser()))
    names = {" ".join(p) for p, _ in leaves}
    # The commands of the issue (fit and view join through the same walk when they are registered).
    assert {"sample", "complete", "evaluate", "evaluator train", "train", "data synth", "data convert",
            "data stats", "render", "hand"} <= names
    start = torch.get_num_threads()
    other = 1 if start != 1 else 2
    for path, leaf in leaves:
        assert "--threads" in leaf._option_string_actions, path
        argv = _minimal_argv(path, leaf)
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        torch.set_num_threads(start)
        code, seen = _run_main(monkeypatch, argv)
        assert code == 0 and seen == {"threads": start, "policy": "PASSIVE", "spin": None}, (path, seen)
        code, seen = _run_main(monkeypatch, argv + ["--threads", str(other)])
        assert code == 0 and seen["threads"] == other, (path, seen)


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "two"])
def test_invalid_threads_is_a_clear_usage_error(monkeypatch, capsys, value):
    with pytest.raises(SystemExit) as exc:
        _run_main(monkeypatch, ["sample", "--num", "1", "--out", "x.npz", "--threads", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--threads" in err and ("positive integer" in err or "must be >= 1" in err) and value in err


def test_user_wait_settings_are_kept(monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    s = threads.configure()
    assert "OMP_WAIT_POLICY" not in os.environ and s.wait_policy is None
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert threads.configure().wait_policy == "ACTIVE"


def test_configure_validates_and_sets_the_count(monkeypatch):
    monkeypatch.setattr(threads, "runnable_others", lambda: 0)
    for bad in (0, -1, 1.0, True, "2"):
        with pytest.raises(InputError, match="threads"):
            threads.configure(bad)
    with pytest.raises(InputError, match="wait_policy"):
        threads.configure(None, wait_policy="spin")
    s = threads.configure(1)
    assert s.threads == 1 == torch.get_num_threads()
    assert s.wait_policy == "PASSIVE" and s.spin_count is None  # one thread: no team to wait for
    assert not s.wait_policy_effective  # torch was imported before: only child processes get the policy


def test_default_threads_share_the_cpus_among_local_processes():
    assert threads.default_threads({}, cpus=8) is None  # one process: torch's own choice (outputs unchanged)
    assert threads.default_threads({"LOCAL_WORLD_SIZE": "1"}, cpus=8) is None
    assert threads.default_threads({"LOCAL_WORLD_SIZE": "3"}, cpus=8) == 2
    assert threads.default_threads({"LOCAL_WORLD_SIZE": "4"}, cpus=2) == 1
    assert threads.default_threads({"LOCAL_WORLD_SIZE": "4", "OMP_NUM_THREADS": "3"}, cpus=8) is None  # user's
    with pytest.raises(InputError, match="LOCAL_WORLD_SIZE"):
        threads.default_threads({"LOCAL_WORLD_SIZE": "two"}, cpus=2)


# Runs `python -m interhandgen ARGS` in a fresh interpreter and records the environment at the moment torch is
# first imported, and the thread count at the end.
_PROBE = r"""
import json, os, runpy, sys
state = {}
class Finder:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "policy_at_torch_import" not in state:
            state["policy_at_torch_import"] = os.environ.get("OMP_WAIT_POLICY")
            state["spin_at_torch_import"] = os.environ.get("GOMP_SPINCOUNT")
        return None
sys.meta_path.insert(0, Finder())
import interhandgen.cli, interhandgen.threads
state["torch_after_cli_import"] = "torch" in sys.modules
sys.argv = ["interhandgen"] + sys.argv[1:]
try:
    runpy.run_module("interhandgen", run_name="__main__")
except SystemExit as e:
    state["code"] = e.code
import torch
state["threads"] = torch.get_num_threads()
print("STATE" + json.dumps(state))
"""


@pytest.mark.parametrize("extra,threads_expected", [([], None), (["--threads", "1"], 1)])
def test_entry_point_sets_the_policy_before_torch(tmp_path, extra, threads_expected):
    env = {k: v for k, v in os.environ.items() if k not in POLICY_ENVS}
    proc = subprocess.run([sys.executable, "-c", _PROBE, "hand", "--side", "right", "--pose", "fist",
                           "--out", str(tmp_path / "fist.obj"), *extra],
                          env=env, capture_output=True, text=True, timeout=300)
    line = [x for x in proc.stdout.splitlines() if x.startswith("STATE")]
    assert line, proc.stderr[-2000:]
    state = json.loads(line[0][5:])
    assert state["code"] == 0 and (tmp_path / "fist.obj").is_file(), proc.stderr[-2000:]
    assert state["torch_after_cli_import"] is False
    # The choice depends on the machine's load at that instant; one of the two must be in place.
    waiting = (state["policy_at_torch_import"], state["spin_at_torch_import"])
    assert waiting in {("PASSIVE", None), (None, threads.QUIET_SPINCOUNT)}, waiting
    if extra:
        assert waiting == ("PASSIVE", None)  # --threads 1
    if threads_expected is not None:
        assert state["threads"] == threads_expected


def test_runnable_others_reads_the_instant_count(tmp_path):
    f = tmp_path / "loadavg"
    f.write_text("3.72 1.88 1.63 5/123 29108\n")
    assert threads.runnable_others(str(f), reads=3, interval_s=0.0) == 4  # this process is one of the 5
    f.write_text("0.00 0.01 0.05 1/80 12\n")
    assert threads.runnable_others(str(f), reads=1) == 0
    for bad in ("", "0.1 0.2 0.3\n", "0.1 0.2 0.3 x/12 4\n"):
        f.write_text(bad)
        assert threads.runnable_others(str(f), reads=1) is None
    assert threads.runnable_others(str(tmp_path / "missing"), reads=1) is None


def test_runnable_others_takes_the_median_of_its_readings(tmp_path, monkeypatch):
    f = tmp_path / "loadavg"
    values = iter(["9/100", "2/100", "3/100", "2/100", "8/100"])  # two momentary spikes among five readings

    def fake_sleep(_s):
        f.write_text(f"1 1 1 {next(values)} 7\n")

    f.write_text(f"1 1 1 {next(values)} 7\n")
    monkeypatch.setattr(threads.time, "sleep", fake_sleep)
    assert threads.runnable_others(str(f), reads=5, interval_s=0.001) == 2  # sorted counts 1,1,2,7,8 -> 2


@pytest.mark.parametrize("count,cpus,others,expected", [
    (2, 2, 0, {"GOMP_SPINCOUNT": threads.QUIET_SPINCOUNT}),  # quiet: a short spin
    (2, 2, 1, {"OMP_WAIT_POLICY": "PASSIVE"}),               # one other running task: the cores are shared
    (2, 2, 2, {"OMP_WAIT_POLICY": "PASSIVE"}),               # two hogs
    (4, 16, 12, {"GOMP_SPINCOUNT": threads.QUIET_SPINCOUNT}),  # enough idle CPUs for the team
    (4, 16, 13, {"OMP_WAIT_POLICY": "PASSIVE"}),
    (1, 2, 0, {"OMP_WAIT_POLICY": "PASSIVE"}),               # one thread: nothing to wait for
    (2, 2, None, {"OMP_WAIT_POLICY": "PASSIVE"}),            # unknown load: the safe choice
])
def test_choose_wait(count, cpus, others, expected):
    assert threads.choose_wait(count, cpus, others) == expected


@pytest.mark.parametrize("others", [0, 5])
def test_auto_policy_follows_the_load_and_is_kept_afterwards(monkeypatch, others):
    monkeypatch.setattr(threads, "runnable_others", lambda: others)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    s = threads.configure(None, planned_threads=2)
    if others == 0:
        assert (s.wait_policy, s.spin_count) == (None, threads.QUIET_SPINCOUNT)
    else:
        assert (s.wait_policy, s.spin_count) == ("PASSIVE", None)
    # A second call (the CLI's, with the parsed --threads) sees the first choice as set and keeps it even if the
    # load changed in between.
    monkeypatch.setattr(threads, "runnable_others", lambda: 5 - others)
    again = threads.configure(None)
    assert (again.wait_policy, again.spin_count) == (s.wait_policy, s.spin_count)


def test_auto_policy_plans_for_the_thread_count_on_the_command_line(monkeypatch):
    assert threads_in_argv(["sample", "--threads", "1"]) == 1
    assert threads_in_argv(["sample", "--threads=3", "--num", "2"]) == 3
    assert threads_in_argv(["sample", "--threads", "zero"]) is None  # the parser reports it later
    assert threads_in_argv(["sample", "--", "--threads", "2"]) is None
    monkeypatch.setattr(threads, "runnable_others", lambda: 0)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    assert before_torch(["sample", "--threads", "1"]).wait_policy == "PASSIVE"  # one thread: no team
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert before_torch(["sample"]).spin_count == threads.QUIET_SPINCOUNT  # two threads on two free CPUs
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert before_torch(["sample"]).wait_policy == "PASSIVE"  # 3 threads do not fit on 2 CPUs
