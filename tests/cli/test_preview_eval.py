"""`alignkit preview SPEC --job EVAL_JOB` (issue 25 item 9): the prompts an eval job sends.

The must-show case: AlpacaEval on a 2048-context model with 2,048 new tokens. Before the never-cut
rule the model saw each instruction's last 8 tokens; the preview shows every real instruction
(../shared/data/alpaca_eval, the leaderboard's gpt4_1106_preview reference file) whole, in the
Vicuna template, with its budget 2048 - prompt tokens. The expected prompt is FastChat's Vicuna
v1.1 format written out here by hand, not alignkit's template."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AE = ROOT.parent / "shared" / "data" / "alpaca_eval"
TINY = ROOT / "assets" / "tiny-llama"
SMOKE = ROOT / "assets" / "smoke-eval"
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
          "helpful, detailed, and polite answers to the user's questions.")


def _spec(tmp_path: Path, context: int = 2048) -> Path:
    model = tmp_path / "llama-2048"
    shutil.copytree(TINY, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["max_position_embeddings"] = context  # LLaMA-1 / Vicuna-7B-v1.3's context; only the config is read
    (model / "config.json").write_text(json.dumps(cfg))
    (model / "model.safetensors").unlink()  # no weights: the preview must not need them
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
name: eval-preview
models:
  llama: {{source: {model}, template: vicuna, kind: pretrained, dtype: float32}}
datasets:
  bt: {{format: beavertails, source: {SMOKE.parent / 'smoke-data'}, split: train}}
methods:
  sft: {{type: sft, learning_rate: 2.0e-4, lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj]}}}}
peft:
  lora: {{quantization: null}}
grid: {{model: [llama], dataset: [bt], preference: [helpful], method: [sft], peft: [lora], seed: [0]}}
evals:
  judges:
    j: {{type: openai, base_url: "http://127.0.0.1:1/v1", model: gpt-4-1106-preview, api_key_env: KEY}}
  benchmarks:
    mmlu: {{type: lm_eval, task: mmlu, num_fewshot: 5, metric: acc}}
    alpaca_eval:
      type: alpaca_eval
      source: {AE}
      reference: gpt4_1106_preview.model_outputs.json
      max_new_tokens: 2048
      judge: j
    red_instruct: {{type: red_instruct, source: {SMOKE / 'red-instruct'}, max_new_tokens: 500, judge: j}}
""")
    return spec


def _preview(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignkit", "preview", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _eval_job(spec: Path) -> str:
    from alignkit.plan.compiler import load_plan

    return next(j.id for j in load_plan(spec).jobs if j.stage == "eval")


def test_alpaca_eval_preview_on_a_2048_context_model_shows_each_whole_instruction(tmp_path):
    from transformers import AutoTokenizer

    spec = _spec(tmp_path)
    job = _eval_job(spec)
    proc = _preview(str(spec), "--job", job, "--benchmark", "alpaca_eval", "--n", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["job"] == job and list(out["benchmarks"]) == ["alpaca_eval"]
    shown = out["benchmarks"]["alpaca_eval"]
    instructions = [r["instruction"] for r in json.loads((AE / "gpt4_1106_preview.model_outputs.json").read_text())]
    assert len(shown) == 20
    tok = AutoTokenizer.from_pretrained(TINY)
    for ex, instruction in zip(shown, instructions, strict=False):
        assert set(ex) == {"prompt", "prompt_tokens", "max_new_tokens"}
        eos = tok.eos_token  # the tiny tokenizer's; decoded from the ids, special tokens kept
        assert ex["prompt"] == f"{tok.bos_token}{SYSTEM} USER: {instruction} ASSISTANT:", (ex["prompt"], eos)
        assert ex["prompt_tokens"] == len(tok(ex["prompt"], add_special_tokens=False)["input_ids"])
        assert ex["prompt_tokens"] > 8  # before the fix the model saw 8 tokens of it
        assert ex["max_new_tokens"] == 2048 - ex["prompt_tokens"]


def test_preview_all_generating_benchmarks_and_the_text_view(tmp_path):
    spec = _spec(tmp_path)
    job = _eval_job(spec)
    out = json.loads(_preview(str(spec), "--job", job, "--n", "2", "--json").stdout)
    assert list(out["benchmarks"]) == ["alpaca_eval", "red_instruct"]  # lm_eval's prompts are lm-eval's
    red = out["benchmarks"]["red_instruct"]
    questions = json.loads((SMOKE / "red-instruct" / "harmful_questions" / "dangerousqa.json").read_text())
    assert len(red) == 2 and questions[0].strip() in red[0]["prompt"]
    assert all(ex["max_new_tokens"] == min(500, 2048 - ex["prompt_tokens"]) for ex in red)
    text = _preview(str(spec), "--job", job, "--n", "1")
    assert text.returncode == 0 and "--- alpaca_eval prompt 1:" in text.stdout and "up to" in text.stdout


@pytest.mark.parametrize("argv, message", [
    (("--benchmark", "nope"), "--benchmark: the eval job has no benchmark 'nope'"),
    (("--benchmark", "mmlu"), "--benchmark: mmlu is an lm_eval benchmark, whose prompts lm-eval builds itself"),
])
def test_bad_benchmark_is_one_line_exit_2(tmp_path, argv, message):
    spec = _spec(tmp_path)
    proc = _preview(str(spec), "--job", _eval_job(spec), *argv)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
