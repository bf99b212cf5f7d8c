"""The offline check (alignkit.plan.preflight, alignkit.contract.hub) and prefetch (alignkit.plan.prefetch) against a fake HF cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.contract.hub import dataset_allow_patterns, missing_assets
from alignkit.plan.preflight import spec_assets

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
    code = ("import sys, alignkit.plan.preflight, alignkit.contract.hub; heavy = {'torch', 'transformers', 'datasets', 'huggingface_hub', "
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
    from alignkit.plan.compiler import load_plan

    plan = load_plan(ROOT / "sweeps" / "smoke.yaml")
    models, datasets = spec_assets([j.to_json() for j in plan.jobs])
    assert str(TINY) in {m["source"] for m in models}
    assert str(SMOKE / "pku-saferlhf") in {d["source"] for d in datasets}
    assert missing_assets(models, datasets) == []


def test_compiled_full_sweep_names_every_hub_model_and_dataset(cache):
    from alignkit.plan.compiler import load_plan

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
    from alignkit.plan.prefetch import model_ignore_patterns, prefetch

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
    from alignkit.plan.prefetch import prefetch

    folder = put(cache, "dataset", "org/prefs", {"data/train.jsonl": "{}\n"})
    lines: list[str] = []
    assert prefetch([], [{"name": "prefs", "source": "org/prefs", "revision": "main"}], progress=lines.append) \
        == [str(folder)]
    assert lines[0] == "dataset prefs: org/prefs@main (cached, verifying)"


# ---- the datasets lm-eval loads (resolved from lm-eval's own task configs) -------------------------

MANAGERS: dict = {}  # lm-eval's TaskManagers, shared by these tests: indexing its task tree takes seconds


@pytest.fixture
def empty_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def _full_assets():
    from alignkit.plan.compiler import load_plan
    from alignkit.plan.preflight import study_assets

    return study_assets([j.to_json() for j in load_plan(ROOT / "sweeps" / "full.yaml").jobs], MANAGERS)


def test_lm_eval_benchmarks_resolve_to_the_hub_configs_their_tasks_load():
    from alignkit.plugins.benchmarks.lm_eval_run import task_datasets

    mmlu = task_datasets("mmlu", None, MANAGERS)
    assert len(mmlu) == 57  # the paper's "57 tasks"
    assert {leaf["dataset_path"] for leaf in mmlu} == {"cais/mmlu"}
    assert len({leaf["dataset_name"] for leaf in mmlu}) == 57 and mmlu[0]["dataset_name"] == "abstract_algebra"
    bbh = task_datasets("bbh_fewshot", None, MANAGERS)
    assert len(bbh) == 27  # BBH's 23 tasks, three of them in three sizes (Suzgun et al. 2022)
    assert {leaf["dataset_path"] for leaf in bbh} == {"SaylorTwift/bbh"}
    assert all(leaf["dataset_kwargs"] == {} and not leaf["custom_dataset"] for leaf in mmlu + bbh)
    smoke = task_datasets("smoke_mmlu", str(ROOT / "assets" / "smoke-eval" / "tasks"), MANAGERS)
    assert [(leaf["task"], leaf["custom_dataset"]) for leaf in smoke] == [("smoke_mmlu", True)]
    with pytest.raises(KeyError):
        task_datasets("no_such_task_anywhere", None, MANAGERS)


def test_full_study_names_the_lm_eval_datasets_an_empty_cache_lacks(cache, empty_datasets_cache):
    from alignkit.plan.preflight import missing_lm_eval, study_problems

    assets = _full_assets()
    assert missing_lm_eval(assets["lm_eval"]) == [
        f"lm_eval mmlu: hub dataset cais/mmlu: 57 of 57 configs are not in the datasets cache ({empty_datasets_cache}): "
        f"abstract_algebra, anatomy, astronomy, college_biology, ... (53 more)",
        f"lm_eval bbh: hub dataset SaylorTwift/bbh: 27 of 27 configs are not in the datasets cache "
        f"({empty_datasets_cache}): boolean_expressions, causal_judgement, date_understanding, disambiguation_qa, "
        f"... (23 more)"]
    checked, problems = study_problems(assets)
    assert checked == "5 models, 5 datasets and 84 lm-eval dataset configs checked"
    # every model (4 + the toxicity classifier) and hub dataset is named, then the lm-eval ones
    assert len(problems) == 5 + 5 + 2 and problems[-2].startswith("lm_eval mmlu:")


def _prepared_config(cache_dir: Path, tmp_path: Path, repo: str, config: str, split: str = "test") -> None:
    """A config prepared the way `datasets` leaves a hub dataset it loaded: <ns>___<name>/<config>/
    <version>/<hash>/ with dataset_info.json and <name>-<split>.arrow (built by datasets itself)."""
    import json as _json
    import shutil

    import datasets

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"question": "2 + 2?", "choices": ["3", "4", "5", "6"], "answer": 1}\n')
    builder = datasets.load_dataset_builder("json", data_files={split: str(rows)}, cache_dir=str(tmp_path / "build"))
    builder.download_and_prepare()
    src = Path(builder.cache_dir)
    ns, name = repo.split("/")
    dst = cache_dir / f"{ns}___{name}" / config / src.parent.name / src.name
    dst.mkdir(parents=True)
    shutil.copy(src / f"json-{split}.arrow", dst / f"{name}-{split}.arrow")
    info = _json.loads((src / "dataset_info.json").read_text())
    (dst / "dataset_info.json").write_text(_json.dumps({**info, "config_name": config, "dataset_name": name}))


def test_the_check_agrees_with_what_datasets_reloads_offline(tmp_path, empty_datasets_cache, monkeypatch):
    import datasets
    from alignkit.plan.preflight import missing_lm_eval
    from alignkit.plugins.benchmarks.lm_eval_run import task_datasets
    from alignkit.plan.prefetch import prefetch_lm_eval

    _prepared_config(empty_datasets_cache, tmp_path, "cais/mmlu", "abstract_algebra")
    leaves = [{"benchmark": "mmlu", **leaf} for leaf in task_datasets("mmlu", None, MANAGERS)]
    assert missing_lm_eval(leaves) == [
        f"lm_eval mmlu: hub dataset cais/mmlu: 56 of 57 configs are not in the datasets cache ({empty_datasets_cache}): "
        f"anatomy, astronomy, college_biology, college_chemistry, ... (52 more)"]
    # what a compute node (HF_HUB_OFFLINE=1) gets from `datasets`, as lm-eval calls it
    code = ("import datasets\n"
            "print(datasets.load_dataset(path='cais/mmlu', name='abstract_algebra')['test'][0]['question'])\n"
            "try:\n    datasets.load_dataset(path='cais/mmlu', name='anatomy')\n"
            "except Exception as e:\n    print(type(e).__name__)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(empty_datasets_cache),
           "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.stdout.split() == ["2", "+", "2?", "ValueError"], out.stderr[-2000:]
    # prefetch: the prepared config is left alone; a download that cannot happen is one line naming it
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    lines: list[str] = []
    assert prefetch_lm_eval(leaves[:1], progress=lines.append) == 0
    assert lines == ["lm_eval mmlu: task mmlu_abstract_algebra: cais/mmlu config abstract_algebra is in the "
                     "datasets cache"]
    with pytest.raises(RuntimeError, match=r"^lm_eval mmlu: task mmlu_anatomy: cannot download cais/mmlu config "
                                           r"anatomy: \w+"):
        prefetch_lm_eval(leaves[1:2], progress=lines.append)


def test_prefetch_of_tasks_on_local_files_downloads_nothing(tmp_path):
    from alignkit.plan.prefetch import prefetch_lm_eval

    leaves = [{"benchmark": "mmlu", "task": "smoke_mmlu", "dataset_path": None, "dataset_name": None,
               "dataset_kwargs": {}, "custom_dataset": True},
              {"benchmark": "own", "task": "own_json", "dataset_path": "json", "dataset_name": None,
               "dataset_kwargs": {"data_files": {"test": str(tmp_path / "t.jsonl")}}, "custom_dataset": False},
              {"benchmark": "dir", "task": "own_dir", "dataset_path": str(tmp_path), "dataset_name": None,
               "dataset_kwargs": {}, "custom_dataset": False}]
    lines: list[str] = []
    assert prefetch_lm_eval(leaves, progress=lines.append) == 0
    assert lines == ["lm_eval mmlu: task smoke_mmlu: its own loader reads local files, nothing to download",
                     "lm_eval own: task own_json: json reads local files, nothing to download",
                     f"lm_eval dir: task own_dir: {tmp_path} reads local files, nothing to download"]


def test_hf_judges_and_unknown_lm_eval_tasks_are_covered():
    from alignkit.plan.preflight import lm_eval_datasets

    judge = {"stage": "judge", "benchmarks": {"ae": {"type": "alpaca_eval", "source": str(TINY),
                                                     "judge": {"name": "local", "type": "hf",
                                                               "source": "org/judge-7b", "revision": "r1"}}}}
    models, _ = spec_assets([judge])
    assert models == [{"name": "judge local", "source": "org/judge-7b", "revision": "r1"}]
    evaluate = {"stage": "eval", "benchmarks": {"x": {"type": "lm_eval", "task": "no_such_task_anywhere"}}}
    assert lm_eval_datasets([evaluate], MANAGERS) == ([], ["lm_eval x: lm-eval knows no task or group "
                                                          "'no_such_task_anywhere'"])


def test_hub_data_dirs_given_per_preference_in_files_are_checked_and_fetched(cache, tmp_path):
    """A normalized dataset's `files` may name hub data_dirs (issue 13): each must be cached; a
    local file among them is the loader's business, not a folder of the hub repo."""
    put(cache, "dataset", "org/prefs", {"honest/train.jsonl": "x", "README.md": "x"})
    local = tmp_path / "kind.jsonl"
    ds = {"name": "prefs", "format": "normalized", "source": "org/prefs", "revision": "main",
          "files": {"honest": "honest", "helpful": "helpful", "kind": str(local)}}
    assert missing_assets([], [ds]) == [
        "dataset prefs: org/prefs@main is in the Hugging Face cache without its subset folder helpful/"]
    assert dataset_allow_patterns(ds)[:2] == ["helpful/*", "honest/*"]
    assert missing_assets([], [dict(ds, files={"honest": "honest", "kind": str(local)})]) == []


def test_external_adapter_targets_are_assets_checked_as_adapters(cache, tmp_path):
    """An adapter named in `targets:` is fetched with the study and must be a PEFT folder."""
    put(cache, "model", "org/dpo-adapter", {"adapter_config.json": "{}", "adapter_model.safetensors": "x"})
    put(cache, "model", "org/not-an-adapter", {"config.json": "{}", "model.safetensors": "x"})
    evaluate = {"stage": "eval", "model": SMOKE_MODELS[0], "benchmarks": {},
                "target": {"kind": "external", "name": "theirs", "source": "org/dpo-adapter", "revision": None}}
    other = dict(evaluate, target=dict(evaluate["target"], name="wrong", source="org/not-an-adapter"))
    local = dict(evaluate, target=dict(evaluate["target"], name="mine", source=str(tmp_path)))
    models, _ = spec_assets([evaluate, other, local])
    assert [(m["name"], m.get("adapter", False)) for m in models] == [
        ("tiny-llama", False), ("target theirs", True), ("target wrong", True), ("target mine", True)]
    assert missing_assets(models, []) == [
        "model target wrong: org/not-an-adapter@main is in the Hugging Face cache without adapter_config.json",
        f"model target mine: local path {tmp_path} has no adapter_config.json (not a Hugging Face PEFT adapter folder)"]
