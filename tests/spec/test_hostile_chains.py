"""A hostile chain of stages: 1,100 methods each `init_from` the one before is refused at plan in
one located line (it ended in a RecursionError), quickly, writing nothing."""

from __future__ import annotations

import time

from alignkit.cli.main import main
from tests.fixtures import spec_fixtures as sf

LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj"]}


def _chain(n: int) -> dict:
    s = sf.base()
    s.pop("merges")
    s["methods"] = {f"m{i:04d}": {"type": "sft", "learning_rate": 1e-4, "lora": LORA,
                                  **({"init_from": {"method": f"m{i - 1:04d}"}} if i else {})} for i in range(n)}
    s["grid"] = {"model": ["m1"], "dataset": ["hh"], "preference": ["helpful"], "peft": ["lora"], "seed": [0],
                 "method": list(s["methods"])}
    return s


def test_a_chain_of_1100_methods_is_one_located_line(tmp_path, capsys):
    spec = sf.write(tmp_path, _chain(1100))
    t0 = time.monotonic()
    assert main(["plan", str(spec), "-o", str(tmp_path / "out")]) == 2
    assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"{spec}:" in err[0] and "methods.m0032.init_from.method: init_from makes a chain of 33 stages" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_chain_at_the_limit_plans(tmp_path, capsys):
    spec = sf.write(tmp_path, _chain(32))
    assert main(["plan", str(spec), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().err
