"""Files honour the umask: a submitted sweep, its code snapshot, a job's own files and collect's
outputs get the modes a plain open()/mkdir() would give (0666/0777 & ~umask), so a collaborator in
the group can run status and collect (under umask 002 also submit) on a shared study."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.submit import launch
from alignkit.contract import fsio
from alignkit.backends import local as local_backend
from alignkit.cli.main import main
from alignkit.submit.sweepdir import SweepDir
from tests.slurm import fakeplan as fp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_(u: int) -> int:
        os.umask(u)
        return u
    yield set_
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def _expected(p: Path, u: int) -> int:
    if p.is_dir():
        return 0o777 & ~u
    return (0o777 if os.lstat(p).st_mode & stat.S_IXUSR else 0o666) & ~u


def _wrong_modes(root: Path, u: int) -> list[str]:
    return [f"{p.relative_to(root)}: {oct(_mode(p))}, want {oct(_expected(p, u))}"
            for p in [root, *sorted(root.rglob("*"))] if not p.is_symlink() and _mode(p) != _expected(p, u)]


@pytest.mark.parametrize("u", [0o002, 0o022])
def test_submitted_sweep_and_collect_outputs_follow_the_umask(tmp_path, monkeypatch, capsys, umask, u):
    umask(u)
    monkeypatch.setattr(local_backend, "start_local_driver", lambda sd, token, code: 0)  # held: no driver needed
    out = tmp_path / "sweep"
    assert main(["submit", str(ROOT / "sweeps" / "smoke.yaml"), "-o", str(out), "--executor", "local",
                 "--hold", "--skip-preflight"]) == 0
    assert main(["collect", str(out), "--format", "csv,md,html", "--no-sacct"]) == 0
    capsys.readouterr()
    for must in ("manifest.json", "journal.jsonl", ".submit.lock", "jobs", "code", "code/alignkit/contract/fsio.py",
                 "code/DIGEST", "collect/results.csv", "collect/report.html", "collect/collect.json"):
        assert (out / must).exists(), must
    job_dirs = list((out / "jobs").iterdir())
    assert job_dirs and all((d / "config.json").exists() for d in job_dirs)
    assert _wrong_modes(out, u) == []
    group = stat.S_IRGRP | (stat.S_IWGRP if u == 0o002 else 0)
    assert _mode(out / "manifest.json") & group == group and _mode(out / "code") & group == group
    # a later submit with different code adds code/versions/<digest>: same modes
    (out / "code" / "DIGEST").write_text("older\n")
    assert main(["submit", str(ROOT / "sweeps" / "smoke.yaml"), "-o", str(out), "--executor", "local",
                 "--hold", "--skip-preflight"]) == 0
    assert list((out / "code" / "versions").iterdir()) and _wrong_modes(out, u) == []


def test_job_side_files_follow_the_umask(tmp_path, umask):
    """A job (jobs/entry.py, in its own process under umask 002) writes progress.json, results and DONE
    through the same helper."""
    job = fp.job("um", steps=2, sleep_s=0.0, poll=False)
    sd = SweepDir.of(tmp_path / "sweep")
    launch.write_sweep(fp.plan(sd.root, [job]), sd)
    code = f"import os; os.umask(0o002); from jobs.entry import run_job; print(run_job({str(sd.job(job.id))!r}))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.stdout.strip() == "done", res.stderr
    for name in ("progress.json", "result-1", "result-2", "DONE"):
        assert _mode(sd.job(job.id) / name) == 0o664, name


def test_atomic_dir_and_rewrites(tmp_path, umask):
    umask(0o002)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)  # a group's setgid directory: new subdirectories must keep inheriting the group
    with fsio.atomic_dir(shared / "checkpoint") as tmp:
        (tmp / "adapter_model.safetensors").write_bytes(b"\0")
    assert stat.S_IMODE(os.stat(shared / "checkpoint").st_mode) == 0o2775
    f = shared / "progress.json"
    fsio.atomic_write_json(f, {"step": 1})
    assert _mode(f) == 0o664
    os.chmod(f, 0o640)  # a user's chmod survives a rewrite, as with open(..., "w")
    fsio.atomic_write_json(f, {"step": 2})
    assert _mode(f) == 0o640
    umask(0o077)
    fsio.atomic_write_text(shared / "private.txt", "x")
    assert _mode(shared / "private.txt") == 0o600


def test_copy_tree_keeps_exec_bit_drops_source_modes(tmp_path, umask):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    (src / "pkg" / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "pkg" / "mod.py", 0o600)
    os.chmod(src / "pkg" / "tool.sh", 0o700)
    os.chmod(src / "pkg", 0o700)
    umask(0o002)
    fsio.copy_tree(src, tmp_path / "dst")
    assert _mode(tmp_path / "dst" / "pkg") == 0o775
    assert _mode(tmp_path / "dst" / "pkg" / "mod.py") == 0o664
    assert _mode(tmp_path / "dst" / "pkg" / "tool.sh") == 0o775


@pytest.mark.parametrize("u", [0o002, 0o027])
def test_local_executor_job_logs_follow_the_umask(tmp_path, u):
    """alignkit/submit/localrun.py's job logs (stdout/stderr of each job) get 0666 & ~umask, like every other file."""
    job = fp.job("logs", steps=1, sleep_s=0.0, poll=False)
    sd = SweepDir.of(tmp_path / "sweep")
    launch.write_sweep(fp.plan(sd.root, [job]), sd)
    code = (f"import os, sys; os.umask({u}); from alignkit.submit.localrun import _run_child; "
            "_run_child(sys.argv[1], sys.argv[2])")
    res = subprocess.run([sys.executable, "-c", code, str(sd.job(job.id)), str(sd.root / "logs" / "%j")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert res.returncode == 0, res.stderr
    logs = sorted((sd.root / "logs").rglob("*_log.*"))
    assert [p.suffix for p in logs] == [".err", ".out"]
    assert {oct(_mode(p)) for p in logs} == {oct(0o666 & ~u)}
