"""Tests against the real dev cluster (slurm/dev-cluster/start.sh).

Without a cluster these tests skip — except under CI=true or ALIGNKIT_REQUIRE_SLURM=1, where a
cluster that does not answer is a failure (CI starts it; a broken start must not pass green).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from alignkit.backends.slurm import slurm_answers


def _required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("ALIGNKIT_REQUIRE_SLURM") == "1"


@pytest.fixture(scope="session")
def cluster() -> str:
    """The default partition of a SLURM controller that answers `scontrol ping`."""
    if not slurm_answers():
        msg = "no SLURM controller answers `scontrol ping` (start one: bash slurm/dev-cluster/start.sh)"
        if _required():
            pytest.fail(msg + " — required because CI=true or ALIGNKIT_REQUIRE_SLURM=1")
        pytest.skip(msg)
    return "debug"


@pytest.fixture
def sweep(request) -> Path:
    # Not tmp_path: other pytest runs on this machine prune old /tmp/pytest-of-* dirs while our
    # jobs still write there. Kept after the test for post-mortems (under /tmp).
    root = Path(os.environ.get("ALIGNKIT_SLURM_TEST_DIR", "/tmp/alignkit-slurm-tests"))
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=root))


def wait_for(pred, timeout: float, what: str, every: float = 1.0):
    end = time.time() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.time() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def steps_log(job_dir: Path) -> list[str]:
    try:
        return (job_dir / "steps.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def sacct_rows(array_ids: list[str]) -> list[str]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(array_ids), "-o", "JobID,State"],
                         capture_output=True, text=True).stdout
    return out.splitlines()
