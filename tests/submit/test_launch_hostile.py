"""No spec or profile value can become a shell command in a generated sbatch script.

Control characters are refused where a profile is loaded (file:line: key) and again where the
script is generated (defence in depth, for values that never went through a profile file: the
spec's output_dir, resources.partition, a profile built in code). Everything else is quoted:
the generated script, run under bash with a stub `srun`, runs nothing it was not meant to.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest

from alignkit.backends import slurm as slurm_backend
from alignkit.cli.main import main as cli
from alignkit.contract.errors import UserError
from alignkit.submit.launch import layout
from alignkit.submit.profiles import load_profile
from tests.slurm import fakeplan as fp

GOLDEN = Path(__file__).parent / "golden"
SMOKE = fp.REPO / "sweeps" / "smoke.yaml"
CONTROL = ["\n", "\r", "\x00", "\x1b", "\x7f", "\t", "\x0b", "\x0c"]


def _profile_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text("name: hostile\nexecutor: slurm\n" + body)
    return path


# ---- refused when the profile is loaded: one line each, naming the file, line and key ----
PROFILE_CASES = [
    *[(f'{key}: "x{c.encode("unicode_escape").decode()}touch PWNED #"\n', key)
      for key in ("partition", "account", "qos", "constraint", "python", "name")
      for c in ("\n", "\r")],
    *[(f'partition: "debug{c.encode("unicode_escape").decode()}"\n', "partition") for c in CONTROL],
    ('sbatch:\n  "mail-user\\ntouch PWNED": x\n', "sbatch.mail-user"),
    ('sbatch:\n  "a b": x\n', "sbatch.a b"),
    ('sbatch:\n  "--exclude": x\n', "sbatch.--exclude"),
    ('sbatch:\n  "x;touch PWNED": x\n', "sbatch.x;touch PWNED"),
    ('sbatch:\n  "x=y": x\n', "sbatch.x=y"),
    ('sbatch:\n  "": x\n', "sbatch."),
    ('sbatch:\n  "ex$(id)": x\n', "sbatch.ex$(id)"),
    ('sbatch:\n  exclude: "n1\\ntouch PWNED"\n', "sbatch.exclude"),
    ('sbatch:\n  exclude: "n1\\rtouch PWNED"\n', "sbatch.exclude"),
    ('sbatch:\n  requeue: false\n', "sbatch.requeue"),
    ('sbatch:\n  exclude: [a, b]\n', "sbatch.exclude"),
]


@pytest.mark.parametrize("body,key", PROFILE_CASES, ids=[f"{k}-{i}" for i, (_, k) in enumerate(PROFILE_CASES)])
def test_hostile_profile_is_refused_at_load(tmp_path, capsys, body, key):
    path = _profile_file(tmp_path, body)
    with pytest.raises(UserError) as err:
        load_profile(str(path))
    assert f"{path}:" in str(err.value) and f": {key}" in str(err.value), str(err.value)
    assert cli(["plan", str(SMOKE), "--profile", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and all(line.startswith("alignkit plan: error: ") for line in lines), lines
    assert "Traceback" not in "\n".join(lines)


def test_profile_python_relative_to_its_file(tmp_path):
    path = _profile_file(tmp_path, "python: ../venv/bin/python\n")
    assert load_profile(str(path)).python == str(tmp_path.parent / "venv" / "bin" / "python")
    assert load_profile(str(_profile_file(tmp_path, "python: python3.11\n"))).python == "python3.11"
    assert load_profile("dev").python == str(fp.REPO / ".venv" / "bin" / "python")


# ---- refused again where the script is generated (values that bypassed the loader) -----
def _one_group(plan):
    return layout(plan, list(plan.jobs), {}, None)[0]


SCRIPT_CASES = [
    ("partition", "debug\ntouch PWNED #", "partition"),
    ("account", "a\rtouch PWNED", "account"),
    ("qos", "q\ntouch PWNED", "qos"),
    ("constraint", "c\x00", "constraint"),
    ("python", "/usr/bin/python3\ntouch PWNED", "python"),
    ("sbatch", {"exclude": "n\ntouch PWNED"}, "sbatch.exclude"),
    ("sbatch", {"bad key": "x"}, "sbatch.bad key"),
    ("sbatch", {"k\nz": "x"}, "sbatch.k\nz"),
]


@pytest.mark.parametrize("field,value,key", SCRIPT_CASES, ids=[c[2].replace("\n", "NL") for c in SCRIPT_CASES])
def test_hostile_profile_built_in_code_is_refused_at_generation(tmp_path, field, value, key):
    plan = fp.plan(tmp_path, [fp.job("a")])
    plan.profile = dataclasses.replace(plan.profile, **{field: value})
    with pytest.raises(UserError, match=r"(dev\.yaml|profile dev): " + re.escape(key.split("\n")[0])):
        slurm_backend.sbatch_script(plan, _one_group(plan), tmp_path / "code", tmp_path / "slurm/%j", False)


@pytest.mark.parametrize("where", ["output_dir", "partition", "name"])
@pytest.mark.parametrize("char", ["\n", "\r", "\x1b"])
def test_hostile_spec_values_are_refused_at_generation(tmp_path, where, char):
    out = tmp_path / (f"out{char}touch PWNED" if where == "output_dir" else "out")
    res = fp.resources(partition=f"debug{char}touch PWNED") if where == "partition" else None
    plan = fp.plan(out, [fp.job("a", res=res)], sweep=f"s{char}touch PWNED" if where == "name" else "s")
    key = {"output_dir": "output_dir", "partition": r"resources.partition \(train\)", "name": "name"}[where]
    with pytest.raises(UserError, match=f"spec.yaml: {key}: contains a control character"):
        slurm_backend.sbatch_script(plan, _one_group(plan), out / "code", out / "slurm/%j", False)
    from alignkit.submit.launch import submit
    for kwargs in ({"dry_run": True}, {"executor": "slurm"}):
        with pytest.raises(UserError, match=f"{key}: contains a control character"):
            submit(plan, **kwargs)
        assert not out.exists(), "nothing half-written"


# ---- accepted values are quoted: the script's header runs nothing ------------------------
NASTY = "$(touch PWNED)`touch PWNED`;touch PWNED&&touch PWNED|x' \"$HOME\\"


def _nasty_plan(tmp_path: Path):
    out = tmp_path / f"sweep {NASTY}"
    res = fp.resources(partition=f"p{NASTY}")
    plan = fp.plan(out, [fp.job(f"n{i}", res=res) for i in range(3)], sweep=f"s{NASTY}")
    plan.profile = dataclasses.replace(
        plan.profile, account=f"a{NASTY}", qos=f"q{NASTY}", constraint=f"c{NASTY}",
        sbatch={"mail-user": f"u{NASTY}", "exclude": NASTY, "requeue": True},
        setup=("export OMP_NUM_THREADS=1",))  # setup lines are shell by design: kept harmless here
    return plan, out


def test_nasty_values_golden_script(tmp_path):
    plan, out = _nasty_plan(tmp_path)
    text = slurm_backend.sbatch_script(plan, _one_group(plan), out / "code", out / "slurm/%j", True)
    text = text.replace(str(tmp_path), "TMP").replace(str(fp.REPO), "REPO")
    text = re.sub(r"([.:])[0-9a-f]{10}\b", r"\1TOKEN", text)
    golden = GOLDEN / "hostile-train.sbatch"
    if os.environ.get("ALIGNKIT_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()
    for line in text.splitlines():  # one line per option: nothing escaped its #SBATCH comment
        assert line.startswith(("#", "export ", "srun ")) or not line.strip(), line


def test_generated_script_runs_nothing_under_bash(tmp_path):
    plan, out = _nasty_plan(tmp_path)
    folder = out / "slurm" / "%j"
    script = slurm_backend.sbatch_script(plan, _one_group(plan), out / "code", folder, False)
    stub = tmp_path / "bin"
    stub.mkdir()
    calls = tmp_path / "srun-args"
    (stub / "srun").write_text(f'#!/bin/bash\nprintf "%s\\0" "$@" > {calls}\n')
    (stub / "srun").chmod(0o755)
    work = tmp_path / "cwd"
    work.mkdir()
    (tmp_path / "job.sh").write_text(script)
    proc = subprocess.run(["bash", str(tmp_path / "job.sh")], cwd=work, capture_output=True, text=True,
                          env={"PATH": f"{stub}:/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("PWNED")), "a value ran as a command"
    args = calls.read_bytes().decode().split("\0")[:-1]
    # srun got the literal paths and interpreter: nothing expanded, nothing split
    assert args[-1] == str(folder) and args[-5:-1] == [plan.profile.python, "-u", "-m", "submitit.core._submit"]
    assert args[2] == str(out / "slurm" / "%A_%a" / "%A_%a_%t_log.out")
