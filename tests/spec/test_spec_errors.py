"""The malformed-spec corpus: every bad spec exits 2 with a one-line message naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alignkit.plan.compiler import load_plan
from alignkit.contract.errors import SpecError
from tests.fixtures.spec_fixtures import base, write


def _set(path: str, value):
    def mutate(d):
        keys = path.split(".")
        cur = d
        for k in keys[:-1]:
            cur = cur[int(k)] if isinstance(cur, list) else cur[k]
        last = keys[-1]
        if isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value
        return d
    return mutate


def _del(path: str):
    def mutate(d):
        keys = path.split(".")
        cur = d
        for k in keys[:-1]:
            cur = cur[k]
        del cur[keys[-1]]
        return d
    return mutate


# (case id, mutation of the base spec or raw YAML text, expected message fragment)
CASES = [
    ("unknown-top-key", _set("sweeep", 1), "sweeep: unknown key 'sweeep'"),
    ("typo-suggests", _set("trainig", {}), "did you mean 'training'?"),
    ("unknown-nested-key", _set("methods.sft.lora.rank", 8), "methods.sft.lora.rank: unknown key 'rank'"),
    ("wrong-type-lr", _set("methods.sft.learning_rate", "fast"), "methods.sft.learning_rate: expected a number, got str 'fast'"),
    ("wrong-type-steps", _set("training.max_steps", "700 steps"), "training.max_steps: expected an integer"),
    ("bool-is-not-int", _set("training.save_steps", True), "training.save_steps: expected an integer, got boolean true"),
    ("unknown-method-in-grid", _set("grid.method", ["sft", "dpoo"]), "grid.method[1]: unknown method 'dpoo' (known: sft, dpo)"),
    ("unknown-model-in-grid", _set("grid.model", ["m1", "m3"]), "grid.model[1]: unknown model 'm3' (known: m1, m2)"),
    ("unknown-preference", _set("grid.preference", ["helpful", "honest"]), "grid.preference[1]: unknown preference 'honest'"),
    ("empty-axis", _set("grid.seed", []), "grid.seed: axis has no values"),
    ("duplicate-axis-value", _set("grid.peft", ["lora", "lora"]), "grid.peft[1]: duplicate value 'lora'"),
    ("unknown-axis", _set("grid.temperature", [1]), "grid.temperature: unknown axis 'temperature'"),
    ("missing-axis", _del("grid.seed"), "grid: axis 'seed' has no values"),
    ("zip-unequal", lambda d: (d["grid"].pop("model"), d["grid"].pop("dataset"),
                               d.update(zip=[{"model": ["m1", "m2"], "dataset": ["hh"]}]), d)[-1],
     "zip[0]: paired axes must have equal lengths (model: 2, dataset: 1)"),
    ("zip-and-grid", lambda d: (d.update(zip=[{"model": ["m1", "m2"], "seed": [0, 1]}]), d)[-1],
     "zip[0].model: axis 'model' is given twice"),
    ("exclude-unknown-value", _set("exclude", [{"model": "m9"}]), "exclude[0].model: unknown model 'm9'"),
    ("include-unknown-axis", _set("include", [{"size": 7}]), "include[0].size: unknown axis 'size'"),
    ("grid-expands-to-nothing", _set("exclude", [{"seed": [0, 1]}]), "grid: the grid expands to no training runs"),
    ("merge-unknown-method", _set("merges.0.method", "frankenmerge"), "merges[0].method: unknown merge method 'frankenmerge' (known: slerp, dare_ties, dare_linear, ties, linear)"),
    ("merge-unknown-axis-value", _set("merges.0.combine", {"preference": ["harmless", "helpfull"]}), "merges[0].combine.preference[1]: unknown preference 'helpfull'"),
    ("merge-slerp-three", _set("merges.0.combine", {"preference": ["harmless", "helpful"], "method": ["sft", "dpo"]}), "merges[0].combine: slerp merges exactly two models, this combines 4"),
    ("merge-across-models", _set("merges.0.combine", {"model": ["m1", "m2"]}), "merges[0].combine.model: cannot combine across 'model'"),
    ("merge-t-out-of-range", _set("merges.0.parameters", {"t": 1.5}), "merges[0].parameters.t: t must be in [0, 1], got 1.5"),
    ("merge-weights-length", lambda d: (d["merges"].append({"name": "dare", "method": "dare_ties", "combine": {"preference": ["harmless", "helpful"]}, "parameters": {"density": 0.5, "weights": [1]}}), d)[-1],
     "merges[1].parameters.weights: weights must be a list of 2 numbers"),
    ("merge-nothing-to-combine", _set("merges.0.where", {"dataset": "bt", "model": "m1", "seed": 0, "peft": "lora", "method": "sft", "preference": "harmless"}), "merges[0].where.preference: axis 'preference' is both combined and filtered"),
    ("merge-where-unknown", _set("merges.0.where", {"dataset": "beaver"}), "merges[0].where.dataset: unknown dataset 'beaver'"),
    ("negative-gpus", _set("resources.train.gpus", -1), "resources.train.gpus: must be zero or more, got -1"),
    ("zero-cpus", _set("resources.eval", {"cpus": 0}), "resources.eval.cpus: must be positive, got 0"),
    ("malformed-time", _set("resources.train.time", "2 hours"), "resources.train.time: malformed time '2 hours'"),
    ("minutes-over-59", _set("resources.train.time", "01:75:00"), "resources.train.time: malformed time '01:75:00': minutes and seconds must be below 60"),
    ("unknown-benchmark-type", _set("evals.benchmarks.mmlu.type", "helm"), "evals.benchmarks.mmlu.type: unknown value 'helm' (allowed: alpaca_eval, lm_eval, realtoxicity, red_instruct)"),
    ("benchmark-unknown-judge", _set("evals.benchmarks.ae.judge", "gpt5"), "evals.benchmarks.ae.judge: unknown judge 'gpt5' (known: j)"),
    ("checkpoint-not-saved", _set("evals.checkpoints", [150, "final"]), "evals.checkpoints[0]: step 150 is not a multiple of training.save_steps 100"),
    ("checkpoint-beyond-end", _set("evals.checkpoints", [800]), "evals.checkpoints[0]: step 800 is beyond training.max_steps 700"),
    ("unknown-template", _set("models.m1.template", "llama3"), "models.m1.template: unknown value 'llama3' (allowed: vicuna, mistral, chat_template, plain)"),
    ("missing-required", _del("models.m1.source"), "models.m1.source: required key 'source' is missing"),
    ("beta-on-sft", _set("methods.sft.beta", 0.1), "methods.sft.beta: beta is not an SFT setting"),
    ("batch-not-divisible", _set("methods.dpo.per_device_batch_size", 5), "methods.dpo.batch_size: 16 is not a multiple of per_device_batch_size 5"),
    ("unknown-quant-type", _set("peft.qlora.quantization.quant_type", "int3"), "peft.qlora.quantization.quant_type: unknown value 'int3' (allowed: nf4, fp4)"),
    # issue 13: subsets may name any preference; the grid's 'harmless' is then missing from hh
    ("subset-lacks-grid-preference", _set("datasets.hh.subsets", {"helpful": "a", "honest": "b"}), "datasets.hh.subsets: no subset for preference 'harmless'"),
    ("beavertails-subset-preference", _set("datasets.bt.subsets", {"honest": "b"}), "datasets.bt.subsets.honest: unknown preference 'honest' (known: helpful, harmless"),
    ("reserved-preference", _set("datasets.hh.subsets", {"original": "a"}), "datasets.hh.subsets.original: 'original' is reserved"),
    ("plus-in-preference", _set("datasets.hh.subsets", {"a+b": "a"}), "datasets.hh.subsets.a+b: preference 'a+b' must start"),
    ("deepspeed-stage", _set("training.deepspeed_stage", 4), "training.deepspeed_stage: unknown value 4 (allowed: 0, 1, 2, 3)"),
    ("top-level-not-mapping", "- just\n- a list\n", "<top>: expected a mapping, got a list"),
    ("yaml-syntax", "name: x\nmodels: {a: [\n", "YAML syntax error"),
    ("empty-file", "", "<top>: the spec is empty"),
]


@pytest.mark.parametrize("case_id,mutation,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_spec_names_the_key(tmp_path, case_id, mutation, expected):
    data = mutation if isinstance(mutation, str) else mutation(base())
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_plan(path)
    problems = info.value.problems
    assert any(expected in p for p in problems), "\n".join(problems)
    for p in problems:  # one line each, starting with the file
        assert "\n" not in p and p.startswith(str(path))


def test_problem_lines_carry_yaml_line_numbers(tmp_path):
    text = write(tmp_path, base()).read_text().replace("method:\n  - sft\n  - dpo", "method:\n  - sft\n  - dpoo")
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_plan(path)
    (problem,) = info.value.problems
    lineno = next(i for i, line in enumerate(text.splitlines(), 1) if "dpoo" in line)
    assert problem.startswith(f"{path}:{lineno}: grid.method[1]: unknown method 'dpoo'")


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    d = base()
    d["methods"]["sft"]["learning_rate"] = "x"
    d["training"]["max_steps"] = "many"
    d["models"]["m1"]["kind"] = "chat"
    with pytest.raises(SpecError) as info:
        load_plan(write(tmp_path, d))
    assert len(info.value.problems) >= 2


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_plan(tmp_path / "nope.yaml")


def test_unsafe_yaml_tags_are_refused(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="YAML syntax error|could not determine a constructor"):
        load_plan(path)


@pytest.mark.parametrize("case_id,mutation,expected", CASES[:3] + CASES[-2:], ids=[c[0] for c in CASES[:3] + CASES[-2:]])
def test_cli_exit_code_2_without_traceback(tmp_path, case_id, mutation, expected):
    data = mutation if isinstance(mutation, str) else mutation(base())
    path = write(tmp_path, data)
    proc = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr
    assert proc.stderr.startswith("alignkit plan: error: ")


def test_cli_missing_spec_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(tmp_path / "x.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
