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
    assert proc.stdout.splitlines()[-1] == "3 models, 4 datasets and 0 lm-eval dataset configs checked, 0 missing"


def _absolute_smoke() -> dict:
    """sweeps/smoke.yaml with its local paths absolute, to be written anywhere."""
    spec = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())
    spec["models"]["tiny-llama"]["source"] = str(ROOT / "assets/tiny-llama")
    for ds in spec["datasets"].values():
        ds["source"] = str(ROOT / ds["source"].replace("../", ""))
    for b in spec["evals"]["benchmarks"].values():
        for key in ("source", "include_path", "classifier"):
            if key in b:
                b[key] = str(ROOT / b[key].replace("../", ""))
    spec["evals"]["judges"]["tiny"]["source"] = str(ROOT / "assets/tiny-llama")
    return spec


def test_a_model_not_in_the_cache_is_named(tmp_path):
    spec = _absolute_smoke()
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


def test_lm_eval_datasets_not_in_the_cache_are_named_and_submit_refuses(tmp_path):
    """BBH as lm-eval ships it loads SaylorTwift/bbh's 27 configs from the hub: an offline job would fail."""
    spec = _absolute_smoke()
    spec["evals"]["benchmarks"]["bbh"] = {"type": "lm_eval", "task": "bbh_fewshot", "num_fewshot": 3,
                                          "metric": "exact_match"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    hf_home = tmp_path / "hf"
    proc = _run("prefetch", str(path), "--check", env_extra={"HF_HOME": str(hf_home)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("missing:")] == [
        f"missing: lm_eval bbh: hub dataset SaylorTwift/bbh: 27 of 27 configs are not in the datasets cache "
        f"({hf_home / 'datasets'}): boolean_expressions, causal_judgement, date_understanding, disambiguation_qa, "
        f"... (23 more)"]
    assert proc.stdout.splitlines()[-1] == "3 models, 4 datasets and 27 lm-eval dataset configs checked, 1 missing"
    proc = _run("submit", str(path), "-o", str(tmp_path / "sweep"), "--executor", "local",
                env_extra={"HF_HOME": str(hf_home)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "SaylorTwift/bbh: 27 of 27 configs" in proc.stderr
    assert not (tmp_path / "sweep").exists()  # refused before anything was written
