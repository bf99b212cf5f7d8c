"""The offline check (alignkit.preflight) and prefetch (jobs.prefetch) against a fake HF cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.preflight import dataset_allow_patterns, missing_assets, spec_assets

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "tiny-llama"
SMOKE = ROOT / "assets" / "smoke-data"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put(cache: Path, kind: str, repo_id: str, files: dict[str, str], revision: str = "main") -> Path:
    """Lay out a repo the way huggingface_hub caches it: refs/<revision> -> snapshots/<commit>/..."""
    repo = cache / f"{kind}s--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(COMMIT)
    for rel, text in files.items():
        path = repo / "snapshots" / COMMIT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return repo / "snapshots" / COMMIT


@pytest.fixture
def cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


SMOKE_MODELS = [{"name": "tiny-llama", "source": str(TINY), "revision": "main"}]
SMOKE_DATASETS = [
    {"name": "hh-rlhf", "format": "hh_rlhf", "source": str(SMOKE / "hh-rlhf"), "revision": "main",
     "subsets": {"helpful": "helpful-base", "harmless": "harmless-base"}},
    {"name": "beavertails", "format": "beavertails", "source": str(SMOKE / "pku-saferlhf"), "revision": "main",
     "subsets": None},
]


def test_module_is_light():
    code = ("import sys, alignkit.preflight; heavy = {'torch', 'transformers', 'datasets', 'huggingface_hub', "
            "'trl', 'peft', 'jobs'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_tiny_local_assets_need_nothing(cache):
    assert missing_assets(SMOKE_MODELS, SMOKE_DATASETS) == []


def test_names_exactly_the_missing_hub_model(cache):
    models = SMOKE_MODELS + [{"name": "mistral-7b", "source": "mistralai/Mistral-7B-v0.1", "revision": "26bca36"}]
    assert missing_assets(models, SMOKE_DATASETS) == [
        f"model mistral-7b: mistralai/Mistral-7B-v0.1@26bca36 is not in the Hugging Face cache ({cache})"]


def test_local_paths_must_exist(cache, tmp_path):
    (tmp_path / "empty-model").mkdir()
    problems = missing_assets([{"name": "gone", "source": str(tmp_path / "gone")},
                               {"name": "empty", "source": str(tmp_path / "empty-model")}],
                              [{"name": "data", "source": str(tmp_path / "data.jsonl")}])
    assert problems == [f"model gone: local path {tmp_path / 'gone'} does not exist",
                        f"model empty: local path {tmp_path / 'empty-model'} has no config.json "
                        f"(not a Hugging Face model folder)",
                        f"dataset data: local path {tmp_path / 'data.jsonl'} does not exist"]


def test_cached_hub_model_and_incomplete_ones(cache):
    put(cache, "model", "org/good", {"config.json": "{}", "model.safetensors": "x"})
    put(cache, "model", "org/noweights", {"config.json": "{}"})
    put(cache, "model", "org/pinned", {"config.json": "{}", "model.safetensors": "x"}, revision="v1")
    models = [{"name": "good", "source": "org/good", "revision": "main"},
              {"name": "noweights", "source": "org/noweights"},
              {"name": "pinned", "source": "org/pinned", "revision": "v1"},
              {"name": "other-rev", "source": "org/pinned", "revision": "v2"}]
    assert missing_assets(models, []) == [
        "model noweights: org/noweights@main is in the Hugging Face cache without weights (*.safetensors or *.bin)",
        f"model other-rev: org/pinned@v2 is not in the Hugging Face cache ({cache})"]


def test_cached_hub_dataset_needs_its_subsets(cache):
    put(cache, "dataset", "Anthropic/hh-rlhf", {"helpful-base/train.jsonl.gz": "x", "README.md": "x"})
    hh = {"name": "hh-rlhf", "format": "hh_rlhf", "source": "Anthropic/hh-rlhf", "revision": "main",
          "subsets": {"helpful": "helpful-base", "harmless": "harmless-base"}}
    assert missing_assets([], [hh]) == [
        "dataset hh-rlhf: Anthropic/hh-rlhf@main is in the Hugging Face cache without its subset folder harmless-base/"]
    assert missing_assets([], [dict(hh, subsets={"helpful": "helpful-base"})]) == []
    assert dataset_allow_patterns(hh)[:2] == ["harmless-base/*", "helpful-base/*"]
    assert dataset_allow_patterns(dict(hh, subsets=None)) is None


def test_spec_assets_collects_distinct_models_datasets_and_benchmark_sources():
    train = {"stage": "train", "model": SMOKE_MODELS[0], "dataset": SMOKE_DATASETS[0]}
    evaluate = {"stage": "eval", "model": SMOKE_MODELS[0], "benchmarks": {
        "mmlu": {"type": "lm_eval", "task": "mmlu"},
        "realtoxicity": {"type": "realtoxicity", "source": "allenai/real-toxicity-prompts",
                         "classifier": "nicholasKluge/ToxicityModel"}}}
    models, datasets = spec_assets([{"id": "a", "config": train}, {"id": "b", "config": train}, evaluate])
    assert [m["source"] for m in models] == [str(TINY), "nicholasKluge/ToxicityModel"]
    assert [d["source"] for d in datasets] == [SMOKE_DATASETS[0]["source"], "allenai/real-toxicity-prompts"]


def test_compiled_smoke_sweep_is_available_offline(cache):
    from alignkit.compile import load_plan

    plan = load_plan(ROOT / "sweeps" / "smoke.yaml")
    models, datasets = spec_assets([j.to_json() for j in plan.jobs])
    assert str(TINY) in {m["source"] for m in models}
    assert str(SMOKE / "pku-saferlhf") in {d["source"] for d in datasets}
    assert missing_assets(models, datasets) == []


def test_compiled_full_sweep_names_every_hub_model_and_dataset(cache):
    from alignkit.compile import load_plan

    plan = load_plan(ROOT / "sweeps" / "full.yaml")
    problems = missing_assets(*spec_assets([j.to_json() for j in plan.jobs]))
    assert len(problems) == len(set(problems))
    named = {p.split(": ")[1].split("@")[0] for p in problems}
    assert {"mistralai/Mistral-7B-v0.1", "lmsys/vicuna-7b-v1.3", "Anthropic/hh-rlhf",
            "PKU-Alignment/PKU-SafeRLHF"} <= named
    hub = [p for p in problems if "data/red-instruct" not in p]  # DangerousQA: a local clone (GitHub only)
    assert all("is not in the Hugging Face cache" in p for p in hub)
    assert [p for p in problems if p not in hub] == [
        f"dataset red_instruct: local path {ROOT / 'data' / 'red-instruct'} does not exist"]


def test_prefetch_local_only_and_offline_failure(cache):
    from jobs.prefetch import model_ignore_patterns, prefetch

    lines: list[str] = []
    assert prefetch(SMOKE_MODELS, SMOKE_DATASETS[:1], progress=lines.append) == []
    assert lines == [f"model tiny-llama: local path {TINY}, nothing to download",
                     f"dataset hh-rlhf: local path {SMOKE / 'hh-rlhf'}, nothing to download"]
    with pytest.raises(RuntimeError, match=r"^model mistral-7b: cannot download mistralai/Mistral-7B-v0.1@abc"):
        prefetch([{"name": "mistral-7b", "source": "mistralai/Mistral-7B-v0.1", "revision": "abc"}], [],
                 progress=lines.append)
    assert "*.bin" in model_ignore_patterns(["config.json", "model.safetensors", "pytorch_model.bin"])
    assert "*.bin" not in model_ignore_patterns(["config.json", "pytorch_model.bin", "consolidated.safetensors"])


def test_prefetch_verifies_a_cached_dataset_offline(cache):
    from jobs.prefetch import prefetch

    folder = put(cache, "dataset", "org/prefs", {"data/train.jsonl": "{}\n"})
    lines: list[str] = []
    assert prefetch([], [{"name": "prefs", "source": "org/prefs", "revision": "main"}], progress=lines.append) \
        == [str(folder)]
    assert lines[0] == "dataset prefs: org/prefs@main (cached, verifying)"
