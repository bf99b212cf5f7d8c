"""Data as people have it (issue 21), end to end on the local executor with the tiny model: DPO on an
ultrafeedback_binarized-shaped parquet (implicit prompt: chosen/rejected hold the user turn too) and
KTO on genuinely unpaired {prompt, completion, label} JSON lines, both with `format` omitted (auto).
Each: `alignkit submit --executor local` -> every job COMPLETED -> `alignkit collect` reads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e import studies

pytestmark = [pytest.mark.slow]

TOPICS = ["the sky", "the sea", "grass", "snow", "coal", "a lemon", "a cherry", "milk"]
COLORS = ["blue", "blue", "green", "white", "black", "yellow", "red", "white"]


def _spec(tmp: Path, source: Path, method: dict) -> Path:
    spec = {
        "name": "formats", "output_dir": str(tmp / "sweep"),
        "models": {"tiny-llama": {"source": str(studies.ROOT / "assets" / "tiny-llama"), "template": "chat_template",
                                  "dtype": "float32"}},
        "datasets": {"mine": {"source": str(source)}},  # format omitted: recognised from the columns
        "methods": {method["type"]: {**method, "learning_rate": 5.0e-3, "batch_size": 4, "per_device_batch_size": 4,
                                     "optimizer": "adamw_torch", "max_length": 64, "max_prompt_length": 32,
                                     "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}},
        "peft": {"lora": {"quantization": None}},
        "training": {"max_steps": 2, "save_steps": 2, "gradient_checkpointing": False, "logging_steps": 1},
        "grid": {"model": ["tiny-llama"], "dataset": ["mine"], "preference": ["all"], "method": [method["type"]],
                 "peft": ["lora"], "seed": [0]},
        "evals": {"checkpoints": ["final"], "benchmarks": {"mmlu": {
            "type": "lm_eval", "task": "smoke_mmlu", "include_path": str(studies.ROOT / "assets" / "smoke-eval" / "tasks"),
            "num_fewshot": 0, "limit": 4, "metric": "acc"}}},
        "resources": {"train": {"gpus": 0, "cpus": 1, "mem_gb": 3, "time": "00:10:00"},
                      "eval": {"gpus": 0, "cpus": 1, "mem_gb": 3, "time": "00:10:00"}},
    }
    path = tmp / "formats.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _finished(spec: Path) -> tuple[list, list[dict], dict]:
    sd, jobs = studies.run(spec)
    assert sorted(j.stage for j in jobs) == ["eval", "train"]
    rows, _ = studies.collect(sd.root)
    assert [r["method"] for r in rows if r["benchmark"] == "mmlu" and r["value"]]
    train = next(j for j in jobs if j.stage == "train")
    metrics = json.loads((sd.job(train.id) / "train_metrics.json").read_text())
    return jobs, rows, metrics


def test_dpo_on_an_ultrafeedback_binarized_shaped_parquet(sweep):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i, (topic, color) in enumerate(zip(TOPICS * 2, COLORS * 2, strict=True)):
        q = f"What color is {topic}?"
        rows.append({"prompt": q, "prompt_id": f"{i:04d}",
                     "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": f"It is {color}."}],
                     "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": "I like trains."}],
                     "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"It is {color}."}],
                     "score_chosen": 9.0, "score_rejected": 2.0})
    data = sweep / "train_prefs-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    _, _, metrics = _finished(_spec(sweep, data, {"type": "dpo", "beta": 0.1}))
    assert metrics["data"]["total"] == 16 and metrics["data"]["dropped"] == {}
    assert metrics["dpo"] is not None  # the DPO summary (reward accuracy, margins) was written


def test_kto_on_unpaired_prompt_completion_label_jsonl(sweep):
    data = sweep / "kto.jsonl"
    with open(data, "w") as f:
        for i, (topic, color) in enumerate(zip(TOPICS * 2, COLORS * 2, strict=True)):
            good = i % 2 == 0  # unpaired: each prompt has one completion, desirable or not
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What color is {topic}?"}],
                                "completion": [{"role": "assistant", "content": f"It is {color}." if good else "No idea."}],
                                "label": good}) + "\n")
    _, _, metrics = _finished(_spec(sweep, data, {"type": "kto", "beta": 0.1}))
    # 16 unpaired rows train as they are (not 32 from unpairing pairs)
    assert metrics["data"]["total"] == 16 and metrics["data"]["trained"] == 16


def test_sft_on_a_messages_jsonl_with_assistant_only_loss(sweep):
    data = sweep / "chat.jsonl"
    with open(data, "w") as f:
        for topic, color in zip(TOPICS * 2, COLORS * 2, strict=True):
            f.write(json.dumps({"messages": [{"role": "system", "content": "Answer briefly."},
                                             {"role": "user", "content": f"What color is {topic}?"},
                                             {"role": "assistant", "content": f"It is {color}."}]}) + "\n")
    spec = _spec(sweep, data, {"type": "sft", "assistant_only_loss": True})
    text = yaml.safe_load(spec.read_text())
    text["methods"]["sft"].pop("max_prompt_length")  # DPO/KTO's field: SFT has none
    spec.write_text(yaml.safe_dump(text, sort_keys=False))
    _, _, metrics = _finished(spec)
    assert metrics["data"]["total"] == 16 and metrics["data"]["trained"] == 16
