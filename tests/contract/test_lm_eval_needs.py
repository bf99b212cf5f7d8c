"""lm-eval tasks with extra requirements (IFEval: langdetect, immutabledict, nltk's punkt_tab) are named
by plan, `prefetch --check` and submit in one line each, exit 2, no traceback (issue 21 item 7)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import yaml

from alignkit.contract import lm_eval_needs
from tests.cli.test_prefetch_cli import _absolute_smoke
from tests.fixtures.eval_fixtures import bench_config

ROOT = Path(__file__).resolve().parents[2]


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _ifeval_spec(tmp_path: Path, task: str = "ifeval") -> Path:
    spec = _absolute_smoke()
    spec["evals"]["benchmarks"] = {"ifeval": {"type": "lm_eval", "task": task, "metric": "prompt_level_strict_acc",
                                              "limit": 4}}
    for judge in spec["evals"].get("judges") or {}:
        spec["evals"]["judges"][judge].pop("benchmarks", None)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _env(tmp_path: Path, pythonpath: str = "") -> dict:
    """HOME and NLTK_DATA in tmp_path, so nltk's data paths hold no punkt_tab unless a test puts it there."""
    (tmp_path / "home").mkdir(exist_ok=True)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"),
            "NLTK_DATA": str(tmp_path / "nltk"),
            "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignkit", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_the_ifeval_extra_is_read_from_lm_evals_metadata():
    assert {"langdetect", "immutabledict"} <= {r.split(">")[0].split("=")[0] for r in lm_eval_needs.extras()["ifeval"]}
    extras = lm_eval_needs.task_extras()
    # tasks/ifeval/ifeval.yaml and tasks/leaderboard/ifeval/ifeval.yaml; MMLU needs nothing more
    assert "ifeval" in extras["ifeval"] and "ifeval" in extras["leaderboard_ifeval"]
    assert "mmlu" not in extras and lm_eval_needs.task_needs("mmlu") is None
    assert lm_eval_needs.nltk_resources("ifeval") == ["tokenizers/punkt_tab"]


def test_missing_and_too_old_packages_are_named():
    assert lm_eval_needs._missing_packages(("alignkit-surely-not-installed>=1",)) == [
        "alignkit-surely-not-installed>=1"]
    have = importlib.metadata.version("PyYAML")
    assert lm_eval_needs._missing_packages(("PyYAML>=999",)) == [f"PyYAML>=999 (have {have})"]
    assert lm_eval_needs._missing_packages(("PyYAML>=1",)) == []


def test_prefetch_check_and_plan_name_what_ifeval_lacks_in_one_line(tmp_path):
    spec = _ifeval_spec(tmp_path)
    env = _env(tmp_path)
    absent = [p for p in ("langdetect", "immutabledict") if not _installed(p)]
    proc = _run(env, "prefetch", str(spec), "--check")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    missing = [line for line in proc.stdout.splitlines() if line.startswith("missing:")]
    assert len(missing) == 1, missing
    line = missing[0]
    assert line.startswith("missing: lm_eval ifeval: task ifeval needs ")
    for package in absent:
        assert package in line
    assert "nltk data tokenizers/punkt_tab (not under any of nltk's data paths " + str(tmp_path / "nltk") in line
    assert "`python -m nltk.downloader -d DIR punkt_tab` and set NLTK_DATA=DIR" in line

    plan = _run(env, "plan", str(spec))
    assert "Traceback" not in plan.stderr
    if absent:  # a package prefetch cannot install: plan refuses
        assert plan.returncode == 2 and plan.stdout == ""
        assert plan.stderr.strip() == (f"alignkit plan: error: {spec}: evals.benchmarks.ifeval: task ifeval needs "
                                       f"Python packages {', '.join(absent)} (lm-eval extra ifeval: "
                                       f"pip install 'alignkit[eval]')")
    else:  # data prefetch downloads: a warning, as for a model not yet in the cache
        assert plan.returncode == 0
        assert "alignkit plan: warning: evals.benchmarks.ifeval: task ifeval needs nltk data tokenizers/punkt_tab" \
            in plan.stderr

    proc = _run(env, "submit", str(spec), "-o", str(tmp_path / "sweep"), "--executor", "local")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "lm_eval ifeval: task ifeval needs" in proc.stderr
    assert not (tmp_path / "sweep").exists()


def _packages_present(tmp_path: Path) -> str:
    """langdetect and immutabledict as importable, versioned stand-ins (where the venv lacks them), so the
    check goes on past them; IFEval's code only calls them when it scores."""
    site = tmp_path / "site"
    for name, version, code in (("langdetect", "1.0.9", ""),
                                ("immutabledict", "4.3.1", "class immutabledict(dict):\n    pass\n")):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(code)
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return str(site)


def test_with_its_packages_and_data_ifeval_checks_its_dataset(tmp_path):
    """punkt_tab in NLTK_DATA (a folder is what nltk.data.find looks for): nothing but google/IFEval is
    missing, and the task's code was loaded without trying to download anything."""
    spec = _ifeval_spec(tmp_path)
    env = _env(tmp_path, "" if _installed("langdetect") and _installed("immutabledict") else _packages_present(tmp_path))
    (tmp_path / "nltk" / "tokenizers" / "punkt_tab").mkdir(parents=True)
    proc = _run(env, "prefetch", str(spec), "--check")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "Downloaded punkt_tab" not in proc.stdout
    assert [line for line in proc.stdout.splitlines() if line.startswith("missing:")] == [
        f"missing: lm_eval ifeval: hub dataset google/IFEval: 1 of 1 configs are not in the datasets cache "
        f"({tmp_path / 'hf' / 'datasets'}): (default config)"]
    plan = _run(env, "plan", str(spec))
    assert plan.returncode == 0 and "ifeval" not in plan.stderr, plan.stderr


def test_the_eval_job_fails_with_the_same_line_before_loading_the_task(tmp_path, monkeypatch):
    """No model is touched: the check runs before lm-eval builds the task (whose import would fail,
    or try to download punkt_tab on a node without internet)."""
    import nltk

    from jobs.errors import JobFailure
    from alignkit.plugins.benchmarks.lm_eval_run import run_benchmark

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk")])
    try:
        run_benchmark(None, None, "ifeval", bench_config("lm_eval", task="ifeval", metric="prompt_level_strict_acc",
                                                         chat_template=False), device="cpu")
    except JobFailure as exc:
        line = str(exc)
    else:
        raise AssertionError("ifeval ran without its packages and data")
    assert line.startswith("benchmarks.ifeval: lm-eval task ifeval needs ")
    assert "\n" not in line and "nltk data tokenizers/punkt_tab" in line
    for package in ("langdetect", "immutabledict"):
        assert (package in line) == (not _installed(package))


def test_prefetch_names_an_nltk_download_it_cannot_make_in_one_line(tmp_path):
    """This machine (and CI) has no route to nltk's data server: prefetch says so, exit 2, no traceback."""
    spec = _ifeval_spec(tmp_path)
    proc = _run(_env(tmp_path), "prefetch", str(spec))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"downloading nltk data punkt_tab into {tmp_path / 'nltk'}" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("alignkit prefetch: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "alignkit prefetch: error: nltk data tokenizers/punkt_tab: download failed: ")
