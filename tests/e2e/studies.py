"""Helpers for the shipped studies' tiny counterparts (sweeps/tiny/): copy a tiny spec beside a
scratch sweep with its local paths made absolute, build the smaller tiny model, run the study on
the local executor and collect it, as a user would (`alignkit submit --executor local`, `collect`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from alignkit.cli.main import main as cli
from alignkit.status.state import refresh
from alignkit.submit.sweepdir import SweepDir
from tests.slurm.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "sweeps" / "tiny"
ENDED = {"COMPLETED", "FAILED", "BLOCKED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}


def _absolute(value: Any) -> Any:
    """Every string that names a path existing relative to sweeps/tiny/ becomes that absolute path."""
    if isinstance(value, dict):
        return {k: _absolute(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_absolute(v) for v in value]
    if isinstance(value, str) and "/" in value and (TINY / value).exists():
        return str((TINY / value).resolve())
    return value


def copy_spec(name: str, tmp: Path, **changes: Any) -> Path:
    """sweeps/tiny/<name>.yaml in `tmp`, local paths absolute, output in tmp/sweep, top-level keys changed."""
    spec = _absolute(yaml.safe_load((TINY / f"{name}.yaml").read_text()))
    spec["output_dir"] = str(tmp / "sweep")
    spec.update(changes)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# The smaller tiny model's own chat template (Zephyr's layout, assistant turns marked for TRL's
# response-only loss), unlike tiny-llama's ChatML: each model of a size study trains with its own.
ZEPHYR_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def build_one_layer(out: Path) -> Path:
    """assets/tiny-llama cut to its first decoder layer: a smaller model of the same family, with the
    same (pre-trained) embeddings and tokenizer, and a chat template of its own."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = ROOT / "assets" / "tiny-llama"
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    model.model.layers = model.model.layers[:1]
    model.config.num_hidden_layers = 1
    if getattr(model.config, "layer_types", None):  # per-layer attention kinds, where the config has them
        model.config.layer_types = model.config.layer_types[:1]
    model.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(src)
    tok.chat_template = ZEPHYR_TEMPLATE
    tok.save_pretrained(out)
    return out


def run(spec: Path, timeout_s: float = 300) -> tuple[SweepDir, list]:
    """Submit on the local executor, wait until every job ended, return the sweep and its jobs."""
    sweep = Path(yaml.safe_load(spec.read_text())["output_dir"])
    assert cli(["submit", str(spec), "--executor", "local", "--skip-preflight"]) == 0
    sd = SweepDir.of(sweep)
    st = wait_for(lambda: (s := refresh(sd)) and all(j.state in ENDED for j in s.jobs) and s, timeout_s,
                  f"{spec.name} to end", every=1)
    bad = [(j.name, j.state, j.reason) for j in st.jobs if j.state != "COMPLETED"]
    assert not bad, bad
    return sd, st.jobs


def collect(sweep: Path) -> tuple[list[dict], Path]:
    """`alignkit collect --format csv,md`: the tidy rows and the output folder."""
    assert cli(["collect", str(sweep), "--format", "csv,md"]) == 0
    out = sweep / "collect"
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f)), out


def manifest(sweep: Path) -> dict:
    return json.loads((sweep / "manifest.json").read_text())
