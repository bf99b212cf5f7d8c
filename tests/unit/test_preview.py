"""`alignkit preview` on the real HH-RLHF rows (../shared/data): what the trainer receives.

The expected strings are built here from the raw transcripts with FastChat's Vicuna v1.1 format
written out by hand (system, " USER: q ASSISTANT: a</s>USER: ..."; fastchat/conversation.py,
`vicuna_v1.1`: sep " ", sep2 "</s>"), not with alignkit's templates.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test-first1000.jsonl.gz"
TINY = ROOT / "assets" / "tiny-llama"
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
          "helpful, detailed, and polite answers to the user's questions.")
EOS = "<|im_end|>"  # the tiny tokenizer's EOS (the Vicuna template prints the tokenizer's own)
MAX_LENGTH, MAX_PROMPT = 512, 128

SPEC = f"""
name: preview-test
models:
  tiny: {{source: {TINY}, template: vicuna, kind: instruct, dtype: float32}}
datasets:
  hh: {{format: hh_rlhf, source: {HH}, split: train}}
methods:
  sft:
    type: sft
    learning_rate: 2.0e-4
    max_length: {MAX_LENGTH}
    lora: {{r: 8, alpha: 16, dropout: 0.1, target_modules: [q_proj, v_proj]}}
  dpo:
    type: dpo
    learning_rate: 5.0e-5
    max_length: {MAX_LENGTH}
    max_prompt_length: {MAX_PROMPT}
    lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}}
peft:
  lora: {{quantization: null}}
grid: {{model: [tiny], dataset: [hh], preference: [harmless], method: [sft, dpo], peft: [lora], seed: [0]}}
"""


def turns(transcript: str) -> list[tuple[str, str]]:
    parts = re.split(r"\n\n(Human|Assistant):", transcript)
    return [(role, text.strip()) for role, text in zip(parts[1::2], parts[2::2], strict=True)]


def vicuna_prompt(ts: list[tuple[str, str]]) -> str:
    out = "<s>" + SYSTEM
    for i, (role, text) in enumerate(ts):
        out += (" " if i == 0 else "") + f"USER: {text} ASSISTANT:" if role == "Human" else f" {text}{EOS}"
    return out


@pytest.fixture(scope="module")
def raw():
    """Final chosen response -> the raw rows that end with it."""
    out: dict[str, list[dict]] = {}
    for line in gzip.open(HH, "rt"):
        row = json.loads(line)
        out.setdefault(turns(row["chosen"])[-1][1], []).append(row)
    return out


def rows_ending(raw: dict, response: str) -> list[dict]:
    """The raw rows whose final response is `response`, or starts with it if max_length cut it
    (a cut inside a UTF-8 character decodes to U+FFFD)."""
    return raw.get(response) or [r for k, rs in raw.items() if k.startswith(response.rstrip("\ufffd")) for r in rs]


def _preview(tmp_path, method: str) -> dict:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    job = f"tiny/hh/harmless/{method}/lora/s0"
    proc = subprocess.run([sys.executable, "-m", "alignkit", "preview", str(spec), "--job", job, "--n", "1000",
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow  # tokenizes 1,000 real rows in a subprocess (about a minute)
def test_sft_loss_text_is_the_final_chosen_response(tmp_path, raw):
    out = _preview(tmp_path, "sft")
    assert out["method"] == "sft" and out["rows_in"] == 1000
    assert out["rows_kept"] == len(out["examples"]) == 1000 - sum(out["dropped"].values())
    assert out["dropped"]["completion_truncated"] > 0  # some final responses lie beyond 512 tokens
    earlier = 0
    for ex in out["examples"]:
        # the text ends with the loss text, and what precedes it is the whole prompt
        assert ex["text"].endswith(ex["loss_text"])
        final = ex["loss_text"][1:].removesuffix(EOS)
        whole = ex["loss_text"].endswith(EOS)
        match = [r for r in rows_ending(raw, final)
                 if ex["text"] == vicuna_prompt(turns(r["chosen"])[:-1]) + ex["loss_text"]]
        assert match, ex  # the whole prompt, then the loss text: the final chosen response
        ts = turns(match[0]["chosen"])
        if whole:
            assert ex["loss_text"] == f" {ts[-1][1]}{EOS}"
        assert "USER:" not in ex["loss_text"]
        earlier += sum(role == "Assistant" for role, _ in ts[:-1])
    assert earlier > 500  # earlier assistant turns were in the text, none in the loss text


@pytest.mark.slow
def test_dpo_prompts_are_whole_when_the_pair_fits(tmp_path, raw):
    from jobs.train.stage import load_tokenizer

    from alignkit.contract.common import ModelConfig

    tok = load_tokenizer(ModelConfig(name="tiny-llama", source=str(TINY), template="vicuna"))

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    out = _preview(tmp_path, "dpo")
    assert out["rows_kept"] == len(out["examples"]) == 995
    fits = cut = 0
    for ex in out["examples"]:
        candidates = rows_ending(raw, ex["chosen"][1:].removesuffix(EOS))
        row = next((r for r in candidates if turns(r["rejected"])[-1][1] in ex["rejected"]
                    or ex["rejected"][1:].rstrip("\ufffd") in turns(r["rejected"])[-1][1]), None)
        assert row is not None, ex
        ts = turns(row["chosen"])
        prompt = vicuna_prompt(ts[:-1])
        responses = [f" {turns(row[k])[-1][1]}{EOS}" for k in ("chosen", "rejected")]
        n_prompt = count(prompt)
        longer = max(count(prompt + r) - n_prompt for r in responses)
        if n_prompt + longer <= MAX_LENGTH:
            fits += 1
            assert ex["prompt"] == prompt  # never cut when the pair fits
            assert [ex["chosen"], ex["rejected"]] == responses
        elif n_prompt <= MAX_PROMPT:  # a short prompt stays whole; the long response is cut instead
            assert ex["prompt"] == prompt
            got = [ex["chosen"], ex["rejected"]]
            assert got != responses and all(r.startswith(g.rstrip("\ufffd")) for g, r in zip(got, responses, strict=True))
        else:
            cut += 1
            assert ex["prompt"].startswith("<s>" + SYSTEM)  # BOS and the system text survive the cut
            assert ex["prompt"].endswith(prompt[-30:])
            assert len(ex["prompt"]) < len(prompt)  # (its token count, 128, is checked in test_train_job)
    assert fits > 500 and cut > 0


def _alignkit(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignkit", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


@pytest.mark.parametrize("job,message", [
    ("nope", "--job: no job matches 'nope'"),
    ("tiny-llama/beavertails/helpful/sft/lora/s0/judge", "is not a training or eval job (stage judge)"),
])
def test_bad_job_is_one_line_and_exit_2(job, message):
    proc = _alignkit("preview", str(ROOT / "sweeps" / "smoke.yaml"), "--job", job)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_sft_method_refuses_max_prompt_length(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("    max_length: 512\n    lora: {r: 8, alpha: 16, dropout: 0.1",
                                 "    max_length: 512\n    max_prompt_length: 64\n    lora: {r: 8, alpha: 16, dropout: 0.1"))
    proc = _alignkit("plan", str(spec))
    assert proc.returncode == 2 and "methods.sft.max_prompt_length: max_prompt_length is not an SFT setting" in proc.stderr


def test_uncached_data_is_refused_at_once_without_the_training_stack(tmp_path):
    """issue 22 item 6: a hub model and dataset that are not cached are named before anything of
    the training stack (torch, transformers, bitsandbytes) is imported: no third-party lines."""
    import time
    spec = tmp_path / "s.yaml"
    spec.write_text((ROOT / "sweeps" / "full.yaml").read_text().replace("../data/red-instruct", str(tmp_path)))
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OPENAI_API_KEY": "x",
           "PYTHONPATH": str(ROOT)}
    script = ("import sys, runpy; sys.argv = ['alignkit', 'preview', sys.argv[1], '--job', sys.argv[2]]\n"
              "try:\n    runpy.run_module('alignkit', run_name='__main__')\nexcept SystemExit as e:\n"
              "    heavy = [m for m in ('torch', 'transformers', 'bitsandbytes', 'datasets') if m in sys.modules]\n"
              "    print('heavy:', heavy, file=sys.stderr); raise\n")
    name = "llama-7b/hh-rlhf/helpful/sft/lora/s0"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, str(spec), name], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    took = time.perf_counter() - t
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1] == "heavy: []", proc.stderr
    assert "run `alignkit prefetch" in lines[0]
    assert any("dataset hh-rlhf: Anthropic/hh-rlhf@main is not in the Hugging Face cache" in ln for ln in lines)
    assert any("model llama-7b: huggyllama/llama-7b@main: its tokenizer is not in" in ln for ln in lines)
    assert not any("kernels" in ln for ln in lines)
    print(f"preview refused in {took:.2f} s")
