"""Disk full, read-only filesystems and killed writers: submit, collect and prune end with one line
(exit 2), leave the sweep directory as consistent as before, and leave no temporary files behind.

The faults are real: a small tmpfs (ENOSPC) remounted read-only (EROFS). Where mounting is not
possible (not root, no CAP_SYS_ADMIN), the same calls fail by monkeypatching the os functions the
writers use, for paths under the fake mount only.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignkit.submit import journal
from alignkit.contract import fsio
from alignkit.backends import local as local_backend
from alignkit.cli.main import main
from tests.fixtures.synthetic_study import write_study
from alignkit.submit.sweepdir import SweepDir

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "sweeps" / "smoke.yaml")


class SmallFS:
    """A filesystem of `size` at `path`: a real tmpfs, or monkeypatched errors where mount is refused."""

    def __init__(self, path: Path, monkeypatch):
        self.path, self.mp, self.full, self.ro = path, monkeypatch, False, False
        path.mkdir()
        self.real = os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True).returncode == 0
        if not self.real:
            self._patch()

    def _remount(self, opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(self.path)], check=True, capture_output=True)

    def resize(self, size: str) -> None:
        """A size below what is in use already leaves it full (ENOSPC on the next write)."""
        if self.real:
            self._remount(f"size={size}")
        self.full = size != "16m"

    def fill(self) -> None:
        """Use up every free byte."""
        if self.real:
            fd = os.open(self.path / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
            finally:
                os.close(fd)
        self.full = True

    def readonly(self, on: bool = True) -> None:
        if self.real:
            self._remount("ro" if on else "rw")
        self.ro = on

    def umount(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)

    # -- the fallback: the calls fsio, journal, launch and prune make, failing under `path`
    def _mine(self, p, dir_fd=None) -> bool:
        if dir_fd is not None:
            p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), os.fspath(p))
        return isinstance(p, (str, os.PathLike)) and os.path.abspath(p).startswith(str(self.path) + os.sep)

    def _fail(self, p, creating: bool) -> None:
        if self.ro:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(p))
        if self.full and creating:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(p))

    def _patch(self) -> None:
        real = {n: getattr(os, n) for n in ("open", "mkdir", "rename", "replace", "unlink", "rmdir")}
        writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

        def open_(p, flags, mode=0o777, *, dir_fd=None):
            if flags & writing and self._mine(p, dir_fd):
                self._fail(p, bool(flags & os.O_CREAT))
            return real["open"](p, flags, mode, dir_fd=dir_fd)

        def wrap(name, creating):
            def f(p, *a, **kw):
                if self._mine(p, kw.get("dir_fd") or kw.get("src_dir_fd")):
                    self._fail(p, creating)
                return real[name](p, *a, **kw)
            return f
        self.mp.setattr(os, "open", open_)
        for name, creating in (("mkdir", True), ("rename", False), ("replace", False), ("unlink", False),
                               ("rmdir", False)):
            self.mp.setattr(os, name, wrap(name, creating))


@pytest.fixture()
def fs(tmp_path, monkeypatch):
    small = SmallFS(tmp_path / "mnt", monkeypatch)
    yield small
    small.umount()


@pytest.fixture(autouse=True)
def no_driver(monkeypatch):
    monkeypatch.setattr(local_backend, "start_local_driver", lambda sd, token, code: 0)  # held: nothing to run


def _submit(out: Path) -> int:
    return main(["submit", SMOKE, "-o", str(out), "--executor", "local", "--hold", "--skip-preflight"])


def _one_error_line(stderr: str, command: str, *words: str) -> str:
    err = stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"alignkit {command}: error: "), err
    assert all(w in err[0] for w in words), err
    return err[0]


def _temps(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.endswith(".tmp")]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in [root, *root.rglob("*")]}


def _consistent(out: Path) -> None:
    """What a reader needs: a whole manifest or none, a whole code snapshot or none, whole journal lines."""
    sd = SweepDir.of(out)
    if sd.manifest.exists():
        sd.load_manifest()
    if sd.code.exists():
        assert (sd.code / "DIGEST").exists()
    if sd.journal.exists():
        for line in sd.journal.read_text().splitlines():
            json.loads(line)
    assert _temps(out) == []


@pytest.mark.parametrize("size", ["64k", "400k", "900k"])  # fails at the manifest, the job configs, the code copy
def test_submit_on_a_full_disk_is_one_line_and_consistent(fs, capsys, size):
    out = fs.path / "sweep"
    fs.resize(size)
    assert _submit(out) == 2
    _one_error_line(capsys.readouterr().err, "submit", "No space left on device")
    _consistent(out)
    fs.resize("16m")
    assert _submit(out) == 0
    capsys.readouterr()
    _consistent(out)
    subs = [r for r in SweepDir.of(out).read_journal() if r["type"] == "submission"]
    assert len(subs) == 1 and len(subs[0]["jobs"]) == len(SweepDir.of(out).load_manifest()["jobs"])


def test_submit_and_collect_on_a_read_only_sweep(fs, tmp_path, capsys):
    out = fs.path / "sweep"
    assert _submit(out) == 0
    fs.readonly()
    before = _tree(out)
    assert _submit(out) == 2
    _one_error_line(capsys.readouterr().err, "submit", "Read-only file system")
    assert main(["collect", str(out), "--format", "csv"]) == 2
    _one_error_line(capsys.readouterr().err, "collect", "Read-only file system", str(out))
    assert _tree(out) == before
    # reading a read-only study and writing elsewhere works
    assert main(["collect", str(out), "--format", "csv,md", "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "collect.json").exists()


def test_collect_into_a_full_disk(fs, tmp_path, capsys):
    root = tmp_path / "study"
    write_study(root, seeds=(0, 1), steps=(100,))
    out = fs.path / "out"
    fs.resize("48k")
    assert main(["collect", str(root), "--format", "csv,md,html", "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "collect", "No space left on device")
    assert _temps(fs.path) == [] and not (out / "collect.json").exists()  # the digest comes last


def test_prune_on_a_read_only_disk_says_what_it_could_not_remove(fs, capsys):
    root = fs.path / "study"
    write_study(root, models=("mistral-7b",), seeds=(0, 1), steps=(100,), merges=False)
    extra = [root / "jobs" / j / "checkpoints" / "step-250" for j in
             [j["id"] for j in SweepDir.of(root).load_manifest()["jobs"] if j["stage"] == "train"]]
    for d in extra:
        d.mkdir()
        (d / "adapter_model.safetensors").write_bytes(b"\0" * 100)
    assert main(["collect", str(root), "--prune", "--json"]) == 0
    listed = [c["path"] for c in json.loads(capsys.readouterr().out)["candidates"]]
    assert len(listed) > len(extra) and all(str(d) in listed for d in extra)
    fs.readonly()
    assert main(["collect", str(root), "--prune", "--yes"]) == 2
    cap = capsys.readouterr()
    assert "removed" not in cap.out  # nothing was
    line = _one_error_line(cap.err, "collect", f"could not remove {len(listed)} of {len(listed)} paths",
                           "Read-only file system")
    assert "removed 0" in line
    assert all(os.path.exists(p) for p in listed)
    fs.readonly(False)
    fs.resize("16m")
    assert main(["collect", str(root), "--prune", "--yes"]) == 0
    assert not any(os.path.exists(p) for p in listed)
    assert _temps(root) == []


def test_prune_frees_a_full_disk(fs, capsys):
    root = fs.path / "study"
    write_study(root, models=("mistral-7b",), seeds=(0,), steps=(100,), merges=False)
    fs.fill()
    assert main(["collect", str(root), "--prune", "--yes", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["freed_bytes"] > 0 and not rep["failed"]
    assert sorted(rep["removed"]) == sorted(c["path"] for c in rep["candidates"])


# ------------------------------------------------------------------ killed writers -------
KILL_AT = {
    # SIGKILL in the middle of the first atomic write (the manifest), or of the code snapshot's copy
    "manifest": "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)",
    "code": "import alignkit.contract.fsio as f; f.shutil.copyfile = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)",
}


def _killed_submit(out: Path, where: str) -> None:
    code = ("import os, signal; import alignkit.backends.local as l; l.start_local_driver = lambda *a: 0; "
            f"{KILL_AT[where]}; from alignkit.cli.main import main; "
            f"main(['submit', {SMOKE!r}, '-o', {str(out)!r}, '--executor', 'local', '--hold', '--skip-preflight'])")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr


@pytest.mark.parametrize("where", ["manifest", "code"])
@pytest.mark.parametrize("next_run", ["submit", "collect"])
def test_a_killed_submit_leaves_no_temporaries_after_the_next_run(tmp_path, capsys, where, next_run):
    out = tmp_path / "sweep"
    _killed_submit(out, where)
    left = _temps(out)
    assert left, "the kill left no temporary: the test would prove nothing"
    # one whose target is never written again (a HOLD file of that submit's token): the sweep-wide sweep
    dead_pid = Path(left[0]).name.split("~")[2]
    (out / "local").mkdir(exist_ok=True)
    (out / "local" / f".HOLD-0123456789~{fsio.HOST}~{dead_pid}~zz.tmp").write_text("x")
    if next_run == "collect" and not (out / "manifest.json").exists():
        (out / "manifest.json").write_text(json.dumps({"sweep": "smoke", "jobs": []}))
    rc = _submit(out) if next_run == "submit" else main(["collect", str(out), "--format", "csv"])
    capsys.readouterr()
    assert rc == 0 and _temps(out) == [], _temps(out)


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    d = tmp_path / "job"
    d.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        host = fsio.HOST
        names = {"live": f".progress.json~{host}~{live.pid}~ab12.tmp",
                 "dead": f".progress.json~{host}~{dead}~cd34.tmp",
                 "mine": f".progress.json~{host}~{os.getpid()}~ef56.tmp",
                 "foreign_new": ".progress.json~othernode~123~gh78.tmp",
                 "foreign_old": ".progress.json~othernode~124~ij90.tmp",
                 "not_ours": ".progress.json.tmp"}
        for n in names.values():
            (d / n).write_text("x")
        old = time.time() - fsio.STALE_FOREIGN_S - 60
        os.utime(d / names["foreign_old"], (old, old))
        removed = {Path(p).name for p in fsio.remove_stale_temps(d)}
        assert removed == {names["dead"], names["foreign_old"]}
    finally:
        live.kill()
        live.wait()


def test_a_torn_journal_line_does_not_swallow_the_next_record(tmp_path):
    sd = SweepDir.of(tmp_path)
    journal.append(sd, {"type": "abandoned", "token": "t1"})
    with open(sd.journal, "ab") as f:
        f.write(b'{"type": "abandoned", "tok')  # an append cut off by a full disk or a kill
    journal.append(sd, {"type": "abandoned", "token": "t3"})
    assert [r["token"] for r in sd.read_journal()] == ["t1", "t3"]
