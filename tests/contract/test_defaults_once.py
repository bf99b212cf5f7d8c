"""Each default is set in exactly one place: the contract's dataclass field (docs/contract.md
"Defaults live in one place").

A default restated elsewhere drifts: DPO's beta 0.1 was once a `None` field filled by the
method's `resolve` and again by `trl_args`. The guards:
- no code in alignkit/plan/, jobs/ or the plug-ins falls back to a literal for a field the
  contract defines with a default (`cfg.get("beta", 0.1)`, `f.beta if f.beta is not None else
  0.1`, `f.split or "train"`): the typed config always holds the value, so the fallback can only
  disagree with it; nor, off a config object (`cfg.get("num_prompts") or 1000`,
  `cfg.reference or DEFAULT_REFERENCE`), for any contract field: what a null field means is set
  once, in the plug-in's one named function (NOT_CONTRACT lists them with their reason);
- the compiler's method block changes no value of the spec's fields (it may only leave keys out of
  config.json, `unwritten_at_default`): a value the spec leaves open is its field's default.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import alignkit.contract.common as common
import alignkit.contract.eval as contract_eval
import alignkit.contract.judge as contract_judge
import alignkit.contract.merge as contract_merge
import alignkit.contract.sections as sections
import alignkit.contract.train as contract_train
from alignkit.contract.methods import LoraFields, plain
from alignkit.contract.schema import Problems, from_dict
from alignkit.plugins.benchmarks import BENCHMARKS
from alignkit.plugins.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("alignkit/plan", "jobs", "alignkit/plugins")
# The names a config object goes by in the scanned code (a typed stage config, a benchmark's or a
# section's config, or the dict the compiler builds): a `.get("k") or X` off anything else reads a
# data row, lm-eval's result dicts or an annotator config, whose keys merely share a field's name.
CONFIG_HOLDERS = frozenset({"cfg", "config", "bench", "b", "benchmark", "spec", "f", "fields", "method",
                            "training", "peft", "quant", "generation"})
# (file, field): a fallback that is not a contract default although the name matches one, or the
# one place that says what a null field means
NOT_CONTRACT = {
    # null reference / annotator = AlpacaEval 2's file and annotator (alpaca_eval.reference_file,
    # .annotator): the fields stay null in job configs, a default there would move every job id
    ("alignkit/plugins/benchmarks/alpaca_eval.py", "reference"),
    ("alignkit/plugins/benchmarks/alpaca_eval.py", "annotator"),
    # null num_prompts = the paper's 1000 most severe prompts (realtoxicity.num_prompts): the field
    # is shared with the other generating types, where null means every prompt
    ("alignkit/plugins/benchmarks/realtoxicity.py", "num_prompts"),
}


def contract_classes() -> set[type]:
    out = set()  # sections holds JudgeSpec, a judged benchmark's "judge" block (common.JudgeClientConfig)
    for mod in (sections, common, contract_train, contract_eval, contract_merge, contract_judge):
        out |= {v for v in vars(mod).values() if isinstance(v, type) and dataclasses.is_dataclass(v)}
    out |= {METHODS.get(n).fields for n in METHODS.names()}
    out |= {BENCHMARKS.get(n).fields for n in BENCHMARKS.names()}
    return out


def contract_fields() -> frozenset[str]:
    """Names of every contract field (a null default included: 'unset', its meaning set in one place)."""
    return frozenset(f.name for cls in contract_classes() for f in dataclasses.fields(cls))


def defaulted_fields() -> set[str]:
    """Names of contract fields that have a default (other than None: 'unset')."""
    names = set()
    for cls in contract_classes():
        for f in dataclasses.fields(cls):
            if f.default not in (dataclasses.MISSING, None) or f.default_factory is not dataclasses.MISSING:
                names.add(f.name)
    return names


def _literal(node: ast.AST) -> bool:
    """A constant or a module constant (DEFAULT_BETA, realtoxicity.DEFAULT_CLASSIFIER, TABLE["key"])."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        node = node.value
    return ((isinstance(node, ast.Constant) and node.value is not None)
            or (isinstance(node, ast.Name) and node.id.isupper())
            or (isinstance(node, ast.Attribute) and node.attr.isupper()))


def _get(node: ast.AST) -> str | None:
    """k of `x.get("k")` (one argument: no fallback of its own)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant)):
        return node.args[0].value
    return None


def _key(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value
    return _get(node)


def _holder(node: ast.AST) -> str | None:
    """The name of what a read is taken off: cfg of cfg.x, cfg["x"], cfg.get("x"); self.cfg -> cfg."""
    if isinstance(node, ast.Call):
        node = node.func
    value = node.value if isinstance(node, (ast.Attribute, ast.Subscript)) else None
    if isinstance(value, ast.Name):
        return value.id
    if isinstance(value, ast.Attribute):
        return value.attr
    return None


def restated(source: str, names: set[str], fields: frozenset[str] = frozenset()) -> list[tuple[int, str, str]]:
    """(line, field, code) of each literal fallback for a field in `names` (fields with a default:
    the fallback restates it), or for any contract field in `fields` read off a config object
    (CONFIG_HOLDERS; a null field's meaning set outside its plug-in's one named function)."""
    hits = []
    for n in ast.walk(ast.parse(source)):
        key = read = None
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
                and len(n.args) == 2 and isinstance(n.args[0], ast.Constant) and _literal(n.args[1])):
            key, read = n.args[0].value, n  # cfg.get("beta", 0.1)
        elif (isinstance(n, ast.IfExp) and isinstance(n.test, ast.Compare) and len(n.test.ops) == 1
              and isinstance(n.test.ops[0], (ast.Is, ast.IsNot)) and isinstance(n.test.comparators[0], ast.Constant)
              and n.test.comparators[0].value is None):
            kept, other = (n.body, n.orelse) if isinstance(n.test.ops[0], ast.IsNot) else (n.orelse, n.body)
            if (isinstance(kept, ast.Call) and isinstance(kept.func, ast.Name) and len(kept.args) == 1
                    and kept.func.id in ("int", "float", "str", "bool")):
                kept = kept.args[0]  # int(f.n) if f.n is not None else 1000
            if _key(kept) is not None and _key(kept) == _key(n.test.left) and _literal(other):
                key, read = _key(kept), kept  # f.beta if f.beta is not None else DEFAULT_BETA
        elif isinstance(n, ast.BoolOp) and isinstance(n.op, ast.Or) and len(n.values) == 2 and _literal(n.values[1]):
            key, read = _key(n.values[0]), n.values[0]  # dataset.split or "train"; cfg.get("num_prompts") or 1000
        if key is None:
            continue
        off_config = _holder(read) in CONFIG_HOLDERS
        # a `.get("k") or X` counts only off a config object: elsewhere it reads rows and result dicts
        if (key in names and (off_config or _get(read) is None)) or (key in fields and off_config):
            hits.append((n.lineno, key, ast.unparse(n)))
    return sorted(hits)


def test_the_scan_finds_the_restatements_it_guards_against():
    old_dpo = ("beta = float(f.beta if f.beta is not None else DEFAULT_BETA)\n"
               "split = dataset.split or 'train'\n"
               "retries = int(cfg.get('max_retries', 5))\n"
               "label = 'subsets' if ds.subsets is not None else 'files'\n"  # a choice, not a fallback
               "steps = t.eval_steps or t.save_steps\n")  # a rule between two fields, not a literal
    assert [(line, key) for line, key, _ in restated(old_dpo, defaulted_fields(), contract_fields())] == [
        (1, "beta"), (2, "split"), (3, "max_retries")]


def test_the_scan_finds_fallbacks_off_a_config_dict_and_null_fields_meanings():
    """The benchmarks' compute side before it took typed configs (alignkit/plugins/benchmarks/*_run.py)."""
    old_run = ("n = int(cfg.get('num_prompts') or 1000)\n"  # a null field's meaning, restated per call
               "ref = cfg.get('reference') or DEFAULT_REFERENCE\n"
               "lc = config.get('length_controlled') or True\n"  # a defaulted field, read off a dict
               "tok = int(cfg.get('max_new_tokens') or REFERENCE_MAX_NEW_TOKENS['realtoxicity'])\n"
               "src = bench.classifier or realtoxicity.DEFAULT_CLASSIFIER\n"
               "iters = int(cfg.get('bootstrap_iters', 1000))\n"  # no such field: a dead read, not a restatement
               "ds = row.get('dataset') or 'none'\n"  # a data row's key that shares a field's name
               "s = (results[task].get('split') or 'x', shots.get('revision') or 'main')\n"  # lm-eval's dicts
               "m = (conf.get('completions_kwargs') or {}).get('model_name')\n"  # an annotator config
               "k = int(b.limit) if b.limit is not None else 1000\n")
    hits = restated(old_run, defaulted_fields(), contract_fields())
    assert [(line, key) for line, key, _ in hits] == [
        (1, "num_prompts"), (2, "reference"), (3, "length_controlled"), (4, "max_new_tokens"), (5, "classifier"),
        (10, "limit")]
    assert {"num_prompts", "reference", "classifier", "dataset", "split"} <= contract_fields()


def test_no_code_restates_a_contract_default():
    names, fields = defaulted_fields(), contract_fields()
    assert {"beta", "max_prompt_length", "split", "revision", "max_retries", "lm_eval_chat_template"} <= names
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            found += [f"{rel}:{line}: {code}" for line, key, code in restated(path.read_text(), names, fields)
                      if (rel, key) not in NOT_CONTRACT]
    assert not found, "defaults restated outside their contract field:\n" + "\n".join(found)


def test_every_exception_is_still_needed():
    """An entry of NOT_CONTRACT that matches no fallback any more is removed, not kept as a blank cheque."""
    names, fields = defaulted_fields(), contract_fields()
    used = set()
    for rel, _ in NOT_CONTRACT:
        path = ROOT / rel
        used |= {(rel, key) for _, key, _ in restated(path.read_text(), names, fields)} if path.is_file() else set()
    assert NOT_CONTRACT <= used, f"exceptions that match nothing: {sorted(NOT_CONTRACT - used)}"


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
