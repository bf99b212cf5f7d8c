"""`collect --prune --yes` never deletes outside the sweep directory, and job ids, tokens and sweep
names read back from the manifest or the journal are refused when they are not one safe path component.

Each hostile layout puts a "victim" directory beside the sweep (what another user's data would be)
and links to it from inside; after `--prune --yes` every victim file must still be there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alignkit.contract import fsio
from alignkit.cli.main import main
from alignkit.collect import prune
from alignkit.collect.study import load_study
from tests.fixtures.synthetic_study import write_study
from alignkit.contract.errors import UserError
from alignkit.submit.sweepdir import SweepDir, check_id, contained, id_problem


@pytest.fixture()
def sweep(tmp_path):
    root = tmp_path / "sweep"
    manifest = write_study(root, models=("mistral-7b",), preferences=("harmless",), methods=("sft",),
                           seeds=(0, 1), steps=(100,), max_steps=300, merges=False)
    trains = [j["id"] for j in manifest["jobs"] if j["stage"] == "train"]
    return root, manifest, trains


def _victim(tmp_path: Path) -> Path:
    """Someone else's training run: checkpoints and optimizer states a prune would love to delete."""
    v = tmp_path / "victim"
    for step in (100, 200, 250):
        ck = v / "checkpoints" / f"step-{step}"
        ck.mkdir(parents=True)
        (ck / "adapter_model.safetensors").write_bytes(b"v" * 300)
        (ck / "optimizer.pt").write_bytes(b"v" * 700)
    (v / "global_step300").mkdir()
    (v / "global_step300" / "mp_rank_00_optim_states.pt").write_bytes(b"v" * 900)
    (v / "optimizer.pt").write_bytes(b"v" * 800)
    (v / "DONE").write_text("1\n")
    return v


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _prune_yes(root: Path, capsys) -> tuple[int, dict]:
    rc = main(["collect", str(root), "--prune", "--yes", "--json"])
    cap = capsys.readouterr()
    return rc, json.loads(cap.out)


def _layout_job_dir(root, trains, victim):
    job = root / "jobs" / trains[0]
    os.rename(job, root / "moved")
    job.symlink_to(victim, target_is_directory=True)
    return [job]


def _layout_checkpoints(root, trains, victim):
    ck = root / "jobs" / trains[0] / "checkpoints"
    for p in sorted(ck.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    ck.rmdir()
    ck.symlink_to(victim / "checkpoints", target_is_directory=True)
    return [ck]


def _layout_step_dir(root, trains, victim):
    link = root / "jobs" / trains[0] / "checkpoints" / "step-250"  # a step no eval uses
    link.symlink_to(victim / "checkpoints" / "step-250", target_is_directory=True)
    return [link]


def _layout_state_files(root, trains, victim):
    job = root / "jobs" / trains[0]
    (job / "optimizer.pt").symlink_to(victim / "optimizer.pt")
    (job / "global_step300").symlink_to(victim / "global_step300", target_is_directory=True)
    (job / "adapter" / "scheduler.pt").symlink_to(victim / "checkpoints" / "step-100" / "optimizer.pt")
    return [job / "optimizer.pt", job / "global_step300", job / "adapter" / "scheduler.pt"]


def _layout_jobs_dir(root, trains, victim):
    """The whole jobs/ folder is a link: every job dir lies outside the sweep's real tree."""
    jobs = root / "jobs"
    os.rename(jobs, victim / "jobs")
    jobs.symlink_to(victim / "jobs", target_is_directory=True)
    return [jobs]


@pytest.mark.parametrize("layout", [_layout_job_dir, _layout_checkpoints, _layout_step_dir, _layout_state_files,
                                    _layout_jobs_dir])
def test_prune_does_not_follow_links_out_of_the_sweep(sweep, tmp_path, capsys, layout):
    root, _, trains = sweep
    victim = _victim(tmp_path)
    links = layout(root, trains, victim)
    before = _files(victim)
    rc, rep = _prune_yes(root, capsys)
    assert rc == 0, rep
    assert _files(victim) == before, "prune deleted outside the sweep directory"
    assert all(os.path.islink(link) for link in links), "a link itself is not a prune candidate either"
    assert not any(c["path"].startswith(str(victim)) for c in rep["candidates"])
    if layout is not _layout_state_files:  # a linked directory on the way is named as skipped
        assert any("symbolic link" in s for s in rep["skipped"]), rep["skipped"]
    if layout is not _layout_jobs_dir:  # the other, ordinary run is still pruned
        assert not list((root / "jobs" / trains[1]).rglob("optimizer.pt"))


def test_a_directory_swapped_for_a_link_after_listing_is_not_followed(sweep, tmp_path):
    """Between the listing and the delete, a checkpoint's parent becomes a link out of the tree:
    the delete walks by O_NOFOLLOW descriptors, so it fails instead of deleting the victim."""
    root, _, trains = sweep
    victim = _victim(tmp_path)
    study = load_study(root, accounting=False)
    cands = prune.candidates(study)
    job = root / "jobs" / trains[0]
    mine = [c for c in cands if c.path.startswith(str(job) + os.sep)]
    assert mine
    os.rename(job / "checkpoints", root / "moved-checkpoints")
    (job / "checkpoints").symlink_to(victim / "checkpoints", target_is_directory=True)
    before = _files(victim)
    freed, removed, failed = prune.apply(mine, study.root)
    assert _files(victim) == before
    assert {p for p, _ in failed} == {c.path for c in mine if "/checkpoints/" in c.path}
    assert all(e.errno in (40, 20) for _, e in failed)  # ELOOP / ENOTDIR
    # a path that is not inside the sweep at all is refused outright
    _, _, failed = prune.apply([prune.Candidate(str(victim / "optimizer.pt"), 800, "x")], study.root)
    assert failed and "outside the sweep directory" in str(failed[0][1])
    assert (victim / "optimizer.pt").exists()


def test_prune_removes_a_directory_whole_or_not_at_all(sweep):
    """A directory is renamed to a temporary name first, so an interrupted prune leaves either the
    checkpoint or an abandoned temporary, which the next prune lists and removes."""
    root, _, trains = sweep
    step = root / "jobs" / trains[0] / "checkpoints" / "step-250"
    step.mkdir()
    (step / "adapter_model.safetensors").write_bytes(b"\0" * 100)
    # what a prune killed between the rename and the rmtree leaves (writer pid 2**22+1: not running)
    left = step.parent / f".step-260~{fsio.HOST}~{2**22 + 1}~prune.tmp"
    left.mkdir()
    (left / "adapter_model.safetensors").write_bytes(b"\0" * 100)
    study = load_study(root, accounting=False)
    cands = {c.path: c.reason for c in prune.candidates(study)}
    assert str(step) in cands and "left by a killed" in cands[str(left)]
    prune.apply(prune.candidates(study), study.root)
    assert not step.exists() and not left.exists()
    assert not [p for p in step.parent.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ ids read back --------
BAD_IDS = ["../x", "..", ".", "a/b", "/etc", "x\n", "x\x00y", "x\ty", "", "a b", "x" * 256, 5, None, ["a"]]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_unsafe_job_ids_are_refused(bad):
    assert id_problem(bad) is not None
    with pytest.raises(UserError, match="where: "):
        check_id(bad, "where")


@pytest.mark.parametrize("good", ["3f9c0a1b2c4d", "smoke", "a.b-c_d", "..x", "x" * 255])
def test_safe_ids_pass(good):
    assert check_id(good, "where") == good


@pytest.mark.parametrize("bad", ["../../victim", "x/../../y", "..", "id\n", "id\x1b[2J"], ids=repr)
@pytest.mark.parametrize("command", [["collect"], ["collect", "--prune"], ["collect", "--prune", "--yes"], ["status"]])
def test_manifest_with_a_hostile_id_is_refused_in_one_line(sweep, tmp_path, capsys, bad, command):
    root, manifest, trains = sweep
    victim = _victim(tmp_path)
    manifest["jobs"][0]["id"] = bad
    (root / "manifest.json").write_text(json.dumps(manifest))
    before = _files(victim), _files(root)
    assert main([command[0], str(root), *command[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and "jobs[0].id" in err[0], err
    assert (_files(victim), _files(root)) == before  # nothing deleted, nothing written


@pytest.mark.parametrize("field,bad", [("depends_on", ["../x"]), ("sweep", "../.."), ("sweep", "name\n")])
def test_manifest_dependency_and_sweep_name_are_checked(sweep, capsys, field, bad):
    root, manifest, _ = sweep
    if field == "sweep":
        manifest["sweep"] = bad
    else:
        manifest["jobs"][1][field] = bad
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["collect", str(root), "--prune"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and ("'sweep'" in err[0] or "depends_on[0]" in err[0])


@pytest.mark.parametrize("record", [
    {"type": "submission", "token": "t1", "executor": "local", "jobs": {"../../x": None}},
    {"type": "local_start", "token": "t1", "job": "a/b", "local_id": "1"},
    {"type": "local_end", "token": "../t", "job": "abc", "state": "COMPLETED"},
    {"type": "cancel", "local_jobs": ["..\n"], "slurm_ids": []},
    {"type": "rollback", "tokens": ["ok", "/abs"]},
], ids=lambda r: r["type"])
def test_journal_with_a_hostile_id_is_refused_where_read(sweep, capsys, record):
    root, _, _ = sweep
    sd = SweepDir.of(root)
    good = {"type": "abandoned", "token": "t0", "time": 1.0}
    sd.journal.write_text(json.dumps(good) + "\n" + json.dumps({"time": 2.0, **record}) + "\n")
    with pytest.raises(UserError, match=r"journal.jsonl: line 2: key '"):
        sd.read_journal()
    assert main(["status", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "journal.jsonl: line 2" in err[0]
    # collect goes on without accounting and names the journal as a problem
    assert main(["collect", str(root), "--format", "csv", "--json"]) == 0
    digest = json.loads(capsys.readouterr().out)
    assert any(p["path"].endswith("journal.jsonl") and "line 2" in p["reason"] for p in digest["problems"])


def test_contained():
    root = os.path.realpath("/tmp")
    assert contained(os.path.join(root, "a", "b"), root)
    assert not contained(root, root) and not contained(os.path.join(root, "..", "etc"), root)
    assert not contained("/etc/passwd", root)
