"""The benchmarks' compute side takes the typed benchmark config (issue 24: jobs accept only typed
configs). The hooks of alignkit/plugins/benchmarks/<type>.py and the helpers of <type>_run.py read
`cfg` (alignkit.plugins.benchmarks.config_class(), a frozen dataclass) by attribute: a `cfg.get(...)`,
`cfg[...]` or a turn back into a dict (`as_dict`, `asdict`) would read keys no config can hold (a
dict read of a key that is not a field silently takes its fallback) and bring back dict entry points.
The judge block (`cfg.judge`) is still a dict in the contract: reading it is fine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from alignkit.plugins import benchmarks
from tests.fixtures.eval_fixtures import SMOKE, TextTemplateTokenizer, bench_config

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "alignkit" / "plugins" / "benchmarks"
CONFIG = "cfg"  # what the hooks and helpers call the typed config
# compile-time hooks (login node): `resolve` fills the dict the compiler is building, not a job's config
COMPILE_TIME = ("resolve",)


def dict_reads(source: str) -> list[tuple[int, str]]:
    """(line, code) of each dict-style read of `cfg` and each conversion of a config to a dict."""
    tree = ast.parse(source)
    skipped = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in COMPILE_TIME
               for n in ast.walk(f)}
    hits = []
    for n in ast.walk(tree):
        if id(n) in skipped:
            continue
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
                and isinstance(n.func.value, ast.Name) and n.func.value.id == CONFIG):
            hits.append((n.lineno, ast.unparse(n)))  # cfg.get("num_prompts")
        elif isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == CONFIG:
            hits.append((n.lineno, ast.unparse(n)))  # cfg["length_controlled"]
        elif isinstance(n, ast.Call) and (getattr(n.func, "id", None) or getattr(n.func, "attr", None)) in ("as_dict", "asdict"):
            hits.append((n.lineno, ast.unparse(n)))  # as_dict(cfg)
    return sorted(hits)


def test_the_scan_finds_dict_reads_of_the_config():
    old = ("n = int(cfg.get('num_prompts') or 1000)\n"
           "lc = bool(cfg['length_controlled'])\n"
           "return run(as_dict(cfg))\n"
           "key = (cfg.judge or {}).get('type')\n"  # the judge block: a dict in the contract
           "cls = task_config.get('class')\n"  # an lm-eval task's own config
           "def resolve(self, cfg, model):\n"
           "    return cfg.get('lc_source')\n")  # compile time: the compiler's dict
    assert [line for line, _ in dict_reads(old)] == [1, 2, 3]


def test_no_benchmark_module_reads_its_config_as_a_dict():
    files = sorted(PLUGINS.glob("*.py"))
    assert {f.stem for f in files} >= {f"{n}_run" for n in ("alpaca_eval", "lm_eval", "realtoxicity", "red_instruct")}
    found = [f"{f.relative_to(ROOT)}:{line}: {code}" for f in files if f.name != "__init__.py"
             for line, code in dict_reads(f.read_text())]
    assert not found, "dict reads of the typed benchmark config:\n" + "\n".join(found)


@pytest.mark.parametrize("type_, source, n, max_new", [
    ("alpaca_eval", SMOKE / "alpaca_eval" / "alpaca_eval.json", 5, 2048),  # null num_prompts: every instruction
    ("red_instruct", SMOKE / "red-instruct", None, 500),
    ("realtoxicity", SMOKE / "realtoxicityprompts" / "prompts.jsonl", 11, 20),  # 1000 asked, 11 rows scored
])
def test_prompts_hook_on_a_typed_config_with_every_field_unset(type_, source, n, max_new):
    """Null fields mean what their type's one named function says (docs/evaluation.md): the reference
    generation length, every prompt (alpaca_eval, red_instruct) or the paper's 1000 (realtoxicity)."""
    import json

    cfg = bench_config(type_, source=str(source))
    prompts, budget = benchmarks.get(type_).prompts(TextTemplateTokenizer(), "b", cfg)
    if n is None:  # red_instruct: all questions of the checkout
        n = len(json.loads((source / "harmful_questions" / "dangerousqa.json").read_text()))
    assert (len(prompts), budget) == (n, max_new)
    short = benchmarks.get(type_).prompts(TextTemplateTokenizer(), "b", bench_config(
        type_, source=str(source), num_prompts=2, max_new_tokens=7))
    assert (len(short[0]), short[1]) == (2, 7)
