"""Hostile local data files: one line naming the file and what is wrong, within a few seconds, no
traceback, at plan (every command that loads the spec) and in the job's loader (which `preview` uses).

Cases: a symlink loop, a FIFO (opening it would block), /dev/zero, a 1 GiB sparse .jsonl (NUL bytes,
no newline), non-UTF-8 bytes in the first rows and past the first 64 KiB, a dangling symlink, a FIFO
inside a dataset folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from alignkit.contract import datafile
from alignkit.cli.main import main
from jobs.data.source import load_split
from jobs.errors import JobFailure

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "tiny-llama"
ROW = json.dumps({"prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n"


def _make(d: Path, kind: str) -> Path:
    p = d / f"{kind}.jsonl"
    if kind == "loop":
        os.symlink(d / "loop2.jsonl", p)
        os.symlink(p, d / "loop2.jsonl")
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "devzero":
        os.symlink("/dev/zero", p)
    elif kind == "sparse":
        with open(p, "wb") as f:
            f.truncate(1 << 30)
    elif kind == "latin1":
        p.write_bytes(ROW.encode() + '{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'.encode("latin-1"))
    elif kind == "late_bad":
        p.write_bytes(ROW.encode() * 2000 + b'{"prompt": "\xff", "chosen": "a", "rejected": "b"}\n')
    elif kind == "dangling":
        os.symlink(d / "gone.jsonl", p)
    return p


EXPECT = {"loop": "a symlink loop", "fifo": "a named pipe (FIFO), not a data file",
          "devzero": "(/dev/zero): a character device, not a data file",
          "sparse": "a NUL byte at byte 0", "latin1": "line 2: byte 64 (0xe9) is not UTF-8"}
# a dangling link is a path that exists nowhere yet: plan warns and submit refuses, as for any missing path
LOADER = {**EXPECT, "dangling": "does not exist (a dangling symlink)"}


def _spec(d: Path, data: str) -> Path:
    spec = d / "spec.yaml"
    spec.write_text(f"""
name: hostile-data
models:
  tiny: {{source: {TINY}, template: vicuna, kind: instruct, dtype: float32}}
datasets:
  d: {{format: normalized, source: ./{data}}}
methods:
  sft: {{type: sft, learning_rate: 2.0e-4, lora: {{r: 8, alpha: 16, dropout: 0.1, target_modules: [q_proj]}}}}
peft:
  lora: {{quantization: null}}
grid: {{model: [tiny], dataset: [d], preference: [x], method: [sft], peft: [lora], seed: [0]}}
""")
    return spec


@pytest.mark.parametrize("kind", sorted(EXPECT))
def test_plan_refuses_a_hostile_data_file_in_one_line(tmp_path, capsys, kind):
    path = _make(tmp_path, kind)
    spec = _spec(tmp_path, path.name)
    t0 = time.monotonic()
    code = main(["plan", str(spec), "-o", str(tmp_path / "out")])
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{spec}:6: datasets.d.source: local path './{path.name}'" in err[0] and EXPECT[kind] in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["loop", "fifo", "devzero", "sparse", "latin1", "late_bad", "dangling"])
def test_the_jobs_loader_refuses_it_in_bounded_time(tmp_path, kind):
    path = _make(tmp_path, kind)
    t0 = time.monotonic()
    with pytest.raises(JobFailure) as err:
        load_split(SimpleNamespace(name="d"), None, split="train", source=str(path))
    assert time.monotonic() - t0 < 5
    msg = str(err.value)
    assert msg.startswith(f"dataset d: local source {path}: ") and "\n" not in msg
    if kind == "late_bad":
        assert "line 2001: byte 98012 (0xff) is not UTF-8" in msg
    else:
        assert LOADER[kind].split("(/dev/zero): ")[-1] in msg


def test_a_fifo_inside_a_dataset_folder(tmp_path):
    folder = tmp_path / "data"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "a.jsonl").write_text(ROW)
    os.mkfifo(folder / "train" / "b.jsonl")
    with pytest.raises(JobFailure, match=r"local source .*/data: train/b.jsonl: a named pipe \(FIFO\)"):
        load_split(SimpleNamespace(name="d"), None, split="train", source=str(folder))


def test_preview_names_a_bad_byte_past_the_first_64_kib(tmp_path):
    """Plan reads only the first 64 KiB; the job's loader (preview's) streams the whole file."""
    path = _make(tmp_path, "late_bad")
    spec = _spec(tmp_path, path.name)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "alignkit", "preview", str(spec), "--job", "tiny/d/x/sft/lora/s0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert time.monotonic() - t0 < 60
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower() or "Traceback" in ln]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert f"dataset d: local source {path}: line 2001: byte 98012 (0xff) is not UTF-8" in errors[0]


def test_text_problem_stops_at_max_bytes(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(ROW.encode() * 30_000 + b"\xff\n")  # past the 64 KiB sniff and the first 1 MiB chunk
    assert datafile.text_problem(p, max_bytes=10) is None  # one chunk read: a bounded pass stops there
    assert "is not UTF-8" in datafile.text_problem(p)
    assert datafile.file_problem(tmp_path) is None and datafile.folder_problem(tmp_path) is None


def test_a_looped_output_or_sweep_dir_is_one_line(tmp_path, capsys):
    """A symlink loop where the sweep goes (or is read from): one line from plan, status, collect, cancel."""
    os.symlink(tmp_path / "o2", tmp_path / "o1")
    os.symlink(tmp_path / "o1", tmp_path / "o2")
    _make(tmp_path, "latin1").unlink()
    (tmp_path / "good.jsonl").write_text(ROW)
    spec = _spec(tmp_path, "good.jsonl")
    for argv in (["plan", str(spec), "-o", str(tmp_path / "o1")], ["status", str(tmp_path / "o1")],
                 ["collect", str(tmp_path / "o1")], ["cancel", str(tmp_path / "o1")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "symlink loop" in err[0], (argv, err)
