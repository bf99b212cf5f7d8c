"""What a compute node runs, named once by string: the one place the login side names `jobs/`.

The login side must name the job's callable (submitit pickles `StageRunner` by reference; the
local executor forks into it), but it imports no compute module: `runner()` loads the module
named here by string when a backend submits or runs jobs. tests/test_import_rules.py checks that
no other module of alignkit/ outside plugins/ imports `jobs`, and that this string is the only
mention of a `jobs.` module in alignkit/'s import machinery.
"""

from __future__ import annotations

import importlib
from types import ModuleType

JOB_ENTRY = "jobs.runner"  # StageRunner (submitit), run_here and PRELOAD (local executor)


def runner() -> ModuleType:
    """The job-entry module (light: submitit and the contract; the stages load inside a job)."""
    return importlib.import_module(JOB_ENTRY)


PREVIEW_ENTRY = "jobs.preview"  # `alignkit preview`'s compute half, run as `python -m` in a child process


def run_preview(request: dict) -> dict:
    """Run the preview's compute half in a child interpreter (the login process never imports the
    training stack); its one-line refusal (exit 2) is raised as a UserError."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from alignkit.contract.errors import UserError

    root = str(Path(__file__).resolve().parents[2])  # the tree this alignkit came from holds jobs/ too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", PREVIEW_ENTRY], input=json.dumps(request), capture_output=True,
                          text=True, env=env)
    if proc.returncode == 2:
        raise UserError(json.loads(proc.stdout)["error"])
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"{PREVIEW_ENTRY} exited with {proc.returncode}")
    return json.loads(proc.stdout)
