"""SFT on a {messages} JSONL, then DPO chained from it on another dataset, as one spec (issue 21 item 3):
sweeps/tiny/sft-chat-then-dpo.yaml on the local executor to COMPLETED, then collect. The DPO run
names its upstream's own dataset and preference (`init_from: {method: sft, dataset: chat,
preference: all}`), so it depends on the SFT run on `chat` while training on beavertails; its
reference model is that SFT model (first loss ln 2, rewards 0). A second study starts DPO from the
SFT run's adapter as a folder that exists already (`init_from: {adapter: PATH}`)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml

from tests.e2e import studies

pytestmark = [pytest.mark.slow]


def _trains(sd, jobs) -> dict[str, tuple]:
    out = {}
    for j in jobs:
        cfg = json.loads((sd.job(j.id) / "config.json").read_text())
        if cfg["stage"] == "train":
            out[cfg["axes"]["method"]] = (j, cfg, json.loads((sd.job(j.id) / "train_metrics.json").read_text()))
    return out


def _starts_at_its_reference(metrics: dict) -> None:
    first = metrics["loss_curve"][0]
    assert first["step"] == 1
    # policy = reference at step 1: -log sigmoid(0) = ln 2 and every reward 0 (TRL: beta * log ratio)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6), first
    assert first["reward_chosen"] == pytest.approx(0.0, abs=1e-6)
    assert first["reward_rejected"] == pytest.approx(0.0, abs=1e-6)


def test_sft_on_chat_data_then_dpo_on_another_dataset(sweep):
    spec = studies.copy_spec("sft-chat-then-dpo", sweep)
    sd, jobs = studies.run(spec, timeout_s=900)
    assert sorted(j.stage for j in jobs) == ["eval", "eval", "train", "train"]
    trains = _trains(sd, jobs)
    assert set(trains) == {"sft", "sft>dpo"}
    sft_job, sft_cfg, sft_m = trains["sft"]
    dpo_job, dpo_cfg, dpo_m = trains["sft>dpo"]
    # each run on its own data; the DPO run's start is the SFT run (by id), and it waits for it
    assert (sft_cfg["axes"]["dataset"], sft_cfg["axes"]["preference"]) == ("chat", "all")
    assert (dpo_cfg["axes"]["dataset"], dpo_cfg["axes"]["preference"]) == ("beavertails", "harmless")
    assert dpo_cfg["init"] == {"job": sft_job.id, "mode": "continue"}
    by_id = {j["id"]: j for j in studies.manifest(sd.root)["jobs"]}
    assert by_id[dpo_job.id]["depends_on"] == [sft_job.id]
    assert sft_m["data"]["parts"][0]["source"].endswith("chat/chat.jsonl")  # the {messages} file
    assert "smoke-data/pku-saferlhf" in dpo_m["data"]["parts"][0]["source"]
    _starts_at_its_reference(dpo_m)
    assert dpo_m["method"] == "dpo" and dpo_m["steps"] == 3
    # each run's eval waits for its own train job and loads that run's adapter
    evals = {by_id[j.id]["depends_on"][0]: j for j in jobs if j.stage == "eval"}
    assert set(evals) == {sft_job.id, dpo_job.id}
    rows, _ = studies.collect(sd.root)
    mmlu = {(r["method"], r["dataset"], r["preference"]) for r in rows if r["benchmark"] == "mmlu" and r["value"]}
    assert mmlu == {("sft", "chat", "all"), ("sft>dpo", "beavertails", "harmless")}

    # DPO from an adapter that exists already: the SFT run's adapter, copied out of the sweep
    adapter = shutil.copytree(sd.job(sft_job.id) / "adapter", sweep / "sft-adapter")
    doc = yaml.safe_load(spec.read_text())
    doc["name"], doc["output_dir"] = "tiny-dpo-from-adapter", str(sweep / "from-adapter")
    doc["methods"] = {"dpo": {**doc["methods"]["dpo"], "init_from": {"adapter": str(adapter)}}}
    doc["grid"] = {**doc["grid"], "method": ["dpo"], "dataset": ["beavertails"], "preference": ["harmless"]}
    del doc["zip"]
    second = sweep / "from-adapter.yaml"
    second.write_text(yaml.safe_dump(doc, sort_keys=False))
    sd2, jobs2 = studies.run(second, timeout_s=900)
    (_, cfg2, m2), = _trains(sd2, jobs2).values()
    assert cfg2["init"] == {"adapter": str(adapter), "mode": "continue"}
    assert cfg2["axes"]["method"] == "dpo" and [j.stage for j in jobs2].count("eval") == 1
    _starts_at_its_reference(m2)
    # the same start, data and settings as the chained run above: the same training
    curve = lambda m: [(p["step"], p["loss"], p["reward_margin"]) for p in m["loss_curve"]]  # noqa: E731
    assert [s for s, _, _ in curve(m2)] == [1, 2, 3]
    assert [x for p in curve(m2) for x in p[1:]] == pytest.approx([x for p in curve(dpo_m) for x in p[1:]], abs=1e-5)
    assert curve(m2)[-1][1] < math.log(2)  # it trained: the check can fail
