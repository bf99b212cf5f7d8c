"""`alignkit prefetch --check` and submit's preflight name exactly what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, env_extra=None, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "alignkit", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT)


def test_smoke_study_needs_nothing_from_the_network():
    proc = _run("prefetch", "sweeps/smoke.yaml", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 missing" in proc.stdout


def test_a_model_not_in_the_cache_is_named(tmp_path):
    spec = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())
    spec["models"]["tiny-llama"]["source"] = str(ROOT / "assets/tiny-llama")
    for ds in spec["datasets"].values():
        ds["source"] = str(ROOT / ds["source"].replace("../", ""))
    for b in spec["evals"]["benchmarks"].values():
        for key in ("source", "include_path", "classifier"):
            if key in b:
                b[key] = str(ROOT / b[key].replace("../", ""))
    spec["evals"]["judges"]["tiny"]["source"] = str(ROOT / "assets/tiny-llama")
    spec["models"]["not-here"] = {"source": "example-org/never-downloaded-7b", "revision": "v1"}
    spec["grid"]["model"] = ["tiny-llama", "not-here"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    hf_home = tmp_path / "hf"
    proc = _run("prefetch", str(path), "--check", env_extra={"HF_HOME": str(hf_home)})
    assert proc.returncode == 2
    missing = [line for line in proc.stdout.splitlines() if line.startswith("missing:")]
    assert missing == [f"missing: model not-here: example-org/never-downloaded-7b@v1 is not in the Hugging Face "
                       f"cache ({hf_home / 'hub'})"]
    proc = _run("submit", str(path), "-o", str(tmp_path / "sweep"), "--executor", "local",
                env_extra={"HF_HOME": str(hf_home)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "never-downloaded-7b@v1" in proc.stderr
    assert not (tmp_path / "sweep" / "manifest.json").exists()  # refused before anything was written
