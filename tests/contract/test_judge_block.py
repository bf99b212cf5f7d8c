"""A judged benchmark's judge block is typed (alignkit/contract/common.py JudgeClientConfig, issue 24
item 2) and keeps every key it had as the dict the compiler built before: config.json's block (so
every judge job id), the result store's judge keys (alignkit/contract/eval.py judge_key), the judge
reply-cache keys (jobs/judge/judges.py) and alpaca_eval's annotation cache file; and it reads back
from config.json as the compiled block."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from alignkit.contract.common import JudgeClientConfig
from alignkit.contract.eval import judge_key
from alignkit.contract.schema import Problems, from_dict, plain
from alignkit.contract.sections import JudgeSpec, PriceSpec
from alignkit.contract.serial import to_json
from alignkit.plan.compiler import load_plan
from alignkit.plugins.benchmarks import alpaca_eval_run
from alignkit.spec import model as spec_model
from alignkit.spec.load import load_spec
from alignkit.spec.paths import resolve_source

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ("smoke.yaml", "full.yaml")  # an hf judge with a local source; openai judges with prices
EVAL_KEY = "e" * 64  # a stored eval result's key (any: the judge's part is what is compared)


def old_block(spec, name: str) -> dict:
    """The dict the compiler wrote before the block was typed (plugins/benchmarks resolve_config)."""
    block = {"name": name, **plain(spec.evals.judges[name])}
    if block.get("source"):
        block["source"] = resolve_source(spec.path.parent, block["source"])
    return block


def old_cache_digest(block: dict) -> dict:
    """What alpaca_eval_run.cache_file hashed of the judge dict (beside the annotator and its config)."""
    return {"type": block.get("type"), "endpoint": block.get("base_url") or block.get("source"),
            "revision": block.get("revision")}


def judged_blocks(study: str, tmp: Path):
    """(spec, typed judge block) of every judged benchmark of every judge job of the study."""
    spec = load_spec(ROOT / "sweeps" / study)
    plan = load_plan(ROOT / "sweeps" / study, output_dir=tmp / "runs")
    seen: dict[int, object] = {}
    for job in [*plan.jobs, *plan.awaiting]:
        if job.stage == "judge":
            for b in job.config.benchmarks.values():
                seen.setdefault(id(b.judge), b.judge)
    assert seen, f"{study} has no judged benchmark"
    return spec, list(seen.values())


@pytest.mark.parametrize("study", STUDIES)
def test_the_typed_block_keeps_every_key_of_the_old_dict(study, tmp_path):
    spec, blocks = judged_blocks(study, tmp_path)
    conf = tmp_path / "annotator.yaml"
    conf.write_text("x: 1\n")
    for block in blocks:
        assert type(block) is JudgeClientConfig
        old = old_block(spec, block.name)
        written = to_json(block)
        assert written == old  # config.json: every field, null ones included
        assert judge_key(EVAL_KEY, block) == judge_key(EVAL_KEY, old)
        got = alpaca_eval_run.cache_file(tmp_path, "ann", conf, block, "ev")
        what = {"annotator": "ann", "config_sha": hashlib.sha256(conf.read_bytes()).hexdigest(), **old_cache_digest(old)}
        assert got.parent.name == "ann-" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
        # config.json's text reads back (strictly) as the compiled block
        problems = Problems("config.json", {})
        assert from_dict(JudgeClientConfig, json.loads(json.dumps(written)), "", problems) == block
        assert not problems.items


def test_keys_pinned_from_before_the_block_was_typed(tmp_path):
    """sweeps/full.yaml's judges (no local paths, so the keys hold on any checkout), as the dict-based
    code of commit 4420d85 computed them."""
    from jobs.judge.judges import make_judge

    _, blocks = judged_blocks("full.yaml", tmp_path)
    by_name = {b.name: b for b in blocks}
    gpt4 = by_name["gpt4_turbo"]
    assert gpt4.price_per_million_tokens == PriceSpec(input=10.0, output=30.0)
    assert judge_key(EVAL_KEY, gpt4)[0] == "fcd868699d1a3f916020024f"
    assert make_judge(gpt4, tmp_path).key == "dd5e628fc11a2eea"
    conf = tmp_path / "c.yaml"
    conf.write_text("x: 1\n")
    assert alpaca_eval_run.cache_file(Path("/c"), "ann", conf, gpt4, "ev") == Path(
        "/c/alpaca_eval/ann-73b045c847f86e2d/ev.json")


def test_the_spec_and_the_contract_share_one_judge_class():
    assert spec_model.JudgeSpec is JudgeSpec and spec_model.PriceSpec is PriceSpec
    assert issubclass(JudgeClientConfig, JudgeSpec)
    with pytest.raises(TypeError):
        JudgeClientConfig(type="hf")  # the name is required
