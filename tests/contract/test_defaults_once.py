"""Each default is set in exactly one place: the contract's dataclass field (docs/contract.md
"Defaults live in one place").

A default restated elsewhere drifts: DPO's beta 0.1 was once a `None` field filled by the
method's `resolve` and again by `trl_args`. Two guards:
- no code in alignkit/plan/, jobs/ or the plug-ins falls back to a literal for a field the
  contract defines with a default (`cfg.get("beta", 0.1)`, `f.beta if f.beta is not None else
  0.1`, `f.split or "train"`): the typed config always holds the value, so the fallback can only
  disagree with it;
- no method's `resolve` changes a value of its config (it may only leave keys out): a value the
  spec leaves open is its field's default.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import alignkit.contract.eval as contract_eval
import alignkit.contract.judge as contract_judge
import alignkit.contract.merge as contract_merge
import alignkit.contract.sections as sections
import alignkit.contract.train as contract_train
from alignkit.contract.methods import LoraFields, plain
from alignkit.contract.schema import Problems, from_dict
from alignkit.plugins.benchmarks import BENCHMARKS
from alignkit.plugins.methods import METHODS, method
from alignkit.spec.model import JudgeSpec

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("alignkit/plan", "jobs", "alignkit/plugins")
# (file, field): a fallback that is not a contract default although the name matches one
NOT_CONTRACT = {
    # the hf judge's own generation length: JudgeSpec has no such field (a benchmark's
    # max_new_tokens is another thing), so no config.json carries it for a judge
    ("jobs/judge/judges.py", "max_new_tokens"),
}


def contract_classes() -> set[type]:
    out = {JudgeSpec}  # a judged benchmark's "judge" block is the spec's JudgeSpec, resolved
    for mod in (sections, contract_train, contract_eval, contract_merge, contract_judge):
        out |= {v for v in vars(mod).values() if isinstance(v, type) and dataclasses.is_dataclass(v)}
    out |= {METHODS.get(n).fields for n in METHODS.names()}
    out |= {BENCHMARKS.get(n).fields for n in BENCHMARKS.names()}
    return out


def defaulted_fields() -> set[str]:
    """Names of contract fields that have a default (other than None: 'unset')."""
    names = set()
    for cls in contract_classes():
        for f in dataclasses.fields(cls):
            if f.default not in (dataclasses.MISSING, None) or f.default_factory is not dataclasses.MISSING:
                names.add(f.name)
    return names


def _literal(node: ast.AST) -> bool:
    return ((isinstance(node, ast.Constant) and node.value is not None)
            or (isinstance(node, ast.Name) and node.id.isupper()))  # a module constant: DEFAULT_BETA


def _key(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value
    return None


def restated(source: str, names: set[str]) -> list[tuple[int, str, str]]:
    """(line, field, code) of each literal fallback for a field in `names`."""
    hits = []
    for n in ast.walk(ast.parse(source)):
        key = None
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
                and len(n.args) == 2 and isinstance(n.args[0], ast.Constant) and _literal(n.args[1])):
            key = n.args[0].value  # cfg.get("beta", 0.1)
        elif (isinstance(n, ast.IfExp) and isinstance(n.test, ast.Compare) and len(n.test.ops) == 1
              and isinstance(n.test.ops[0], (ast.Is, ast.IsNot)) and isinstance(n.test.comparators[0], ast.Constant)
              and n.test.comparators[0].value is None):
            kept, other = (n.body, n.orelse) if isinstance(n.test.ops[0], ast.IsNot) else (n.orelse, n.body)
            if _key(kept) is not None and _key(kept) == _key(n.test.left) and _literal(other):
                key = _key(kept)  # f.beta if f.beta is not None else DEFAULT_BETA
        elif isinstance(n, ast.BoolOp) and isinstance(n.op, ast.Or) and len(n.values) == 2 and _literal(n.values[1]):
            key = _key(n.values[0])  # dataset.split or "train"
        if key in names:
            hits.append((n.lineno, key, ast.unparse(n)))
    return sorted(hits)


def test_the_scan_finds_the_restatements_it_guards_against():
    old_dpo = ("beta = float(f.beta if f.beta is not None else DEFAULT_BETA)\n"
               "split = dataset.split or 'train'\n"
               "retries = int(cfg.get('max_retries', 5))\n"
               "label = 'subsets' if ds.subsets is not None else 'files'\n"  # a choice, not a fallback
               "steps = t.eval_steps or t.save_steps\n")  # a rule between two fields, not a literal
    assert [(line, key) for line, key, _ in restated(old_dpo, defaulted_fields())] == [
        (1, "beta"), (2, "split"), (3, "max_retries")]


def test_no_code_restates_a_contract_default():
    names = defaulted_fields()
    assert {"beta", "max_prompt_length", "split", "revision", "max_retries", "lm_eval_chat_template"} <= names
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            found += [f"{rel}:{line}: {code}" for line, key, code in restated(path.read_text(), names)
                      if (rel, key) not in NOT_CONTRACT]
    assert not found, "defaults restated outside their contract field:\n" + "\n".join(found)


@pytest.mark.parametrize("kind", METHODS.names())
def test_the_method_block_changes_no_value(kind):
    """The compiler's method block is the spec's fields (plus `name`): it may leave keys out of
    config.json (`unwritten_at_default`: old ids stay) but never fills or changes one, and what it
    leaves out reads back as the same value (the value the spec leaves open is the field's default)."""
    from alignkit.contract.serial import to_json
    from alignkit.plugins.methods import resolve_config

    fields_cls = METHODS.get(kind).fields
    assert set(fields_cls.unwritten_at_default) <= {f.name for f in dataclasses.fields(fields_cls)}
    lora = LoraFields(r=8, alpha=16, dropout=0.0, target_modules=("q_proj",))
    f = fields_cls(type=kind, learning_rate=1e-4, lora=lora)
    cfg = {"name": kind, **plain(f)}
    block = to_json(resolve_config(kind, f))
    assert set(block) <= set(cfg)
    assert {k: v for k, v in cfg.items() if k in block} == block
    assert from_dict(METHODS.get(kind).config_class(), block, "", Problems("t", {})) == resolve_config(kind, f)


def test_dpo_beta_default_lives_in_its_fields():
    dpo = METHODS.get("dpo").fields
    defaults = {f.name: f.default for f in dataclasses.fields(dpo)}
    assert (defaults["beta"], defaults["max_prompt_length"]) == (0.1, 128)
