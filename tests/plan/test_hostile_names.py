"""Names and text: two different runs never share one job name, and bidi controls never reach the
terminal raw.

Dotted values that differ only by zero-width characters or by accents that collapse in a name
('été' / 'ètè' -> '_t_') are refused at plan in one located line (no existing name moves: the shipped
sweeps' ids and names are pinned by tests/plan/test_full_ids.py). An RTL override (U+202E) in a
label prints as [U+202E] on the terminal."""

from __future__ import annotations

import pytest

from alignkit.submit import launch
from alignkit.cli.main import main
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp
from tests.fixtures import spec_fixtures as sf


def _spec(values: list) -> dict:
    s = sf.base()
    s.pop("merges")
    s["grid"] = {"model": ["m1"], "dataset": ["hh"], "preference": ["helpful"], "method": ["sft"], "peft": ["lora"],
                 "seed": [0], "dataset.split": values}
    return s


@pytest.mark.parametrize("values", [["été", "ètè"], ["a\u200bb", "a\u200cb"], ["x\u202ey", "x\u2066y"],
                                    ["Ünï", "Ūnì"]])
def test_values_that_collapse_to_one_name_are_refused_at_plan(tmp_path, capsys, values):
    path = sf.write(tmp_path, _spec(values))
    assert main(["plan", str(path), "-o", str(tmp_path / "out")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"{path}:" in err[0] and "grid.dataset.split" in err[0] and "give two runs one name" in err[0]
    assert not any(ch in err[0] for ch in "\u200b\u200c\u202e\u2066")  # shown escaped, not raw
    assert not (tmp_path / "out").exists()


def test_values_that_stay_distinct_plan(tmp_path, capsys):
    path = sf.write(tmp_path, _spec(["été", "ete"]))
    assert main(["plan", str(path), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().err


def test_bidi_controls_never_reach_the_terminal(tmp_path, capsys):
    s = _spec(["safe\u202etxt.exe"])
    s["name"] = "unit"
    path = sf.write(tmp_path, s)
    assert main(["plan", str(path), "--json"]) == 0
    out = capsys.readouterr()
    assert "\u202e" not in out.out + out.err
    s["grid"]["dataset.split"] = ["a", "b"]
    s["targets"] = {"t\u202e": {"source": "org/x", "base": "m1"}}  # a name: refused, escaped in the message
    path = sf.write(tmp_path, s)
    assert main(["plan", str(path)]) == 2
    out = capsys.readouterr()
    assert "\u202e" not in out.out + out.err and "targets" in out.err


def test_status_shows_a_bidi_label_inert(tmp_path, capsys):
    """Whatever a sweep holds (here a job name written by hand into the manifest), status prints an
    RTL override as [U+202E], never raw."""
    job = fp.job("safe\u202etxt.exe", steps=1, sleep_s=0.0, poll=False)
    sd = SweepDir.of(tmp_path / "sweep")
    launch.write_sweep(fp.plan(sd.root, [job]), sd)
    main(["status", str(sd.root), "--jobs"])  # the per-job table: one row per job, with its name
    out = capsys.readouterr()
    assert "\u202e" not in out.out + out.err
    assert "safe[U+202E]txt.exe" in out.out
