"""`plan` and `submit` read a sample of every dataset a study trains on before anything is written
(alignkit/plan/datacheck.py): one line naming the file, the row and the field, exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from alignkit.cli.main import main
from tests.unit.spec_fixtures import write

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "assets" / "tiny-llama"
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj"]}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pairs(n: int) -> list[dict]:
    return [{"prompt": f"question {i}?", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"} for i in range(n)]


def spec(tmp_path: Path, source: Path | str, method: str = "dpo", model: Path = TINY, template: str = "chat_template",
         fmt: str | None = None) -> Path:
    methods = {"dpo": {"type": "dpo", "learning_rate": 1e-4, "lora": LORA},
               "kto": {"type": "kto", "learning_rate": 1e-4, "lora": LORA},
               "sft": {"type": "sft", "learning_rate": 1e-4, "lora": LORA}}
    ds = {"source": str(source)}
    if fmt:
        ds["format"] = fmt
    return write(tmp_path, {
        "name": "check", "output_dir": str(tmp_path / "sweep"),
        "models": {"tiny": {"source": str(model), "template": template, "dtype": "float32"}},
        "datasets": {"prefs": ds},
        "methods": {method: methods[method]},
        "peft": {"lora": {"quantization": None}},
        "training": {"max_steps": 2, "save_steps": 2},
        "grid": {"model": ["tiny"], "dataset": ["prefs"], "preference": ["mine"], "method": [method],
                 "peft": ["lora"], "seed": [0]},
        "resources": {"train": {"gpus": 0, "cpus": 1, "mem_gb": 2, "time": "00:10:00"}}})


def test_a_third_row_without_rejected_is_refused_by_plan_in_one_line(tmp_path):
    data = jsonl(tmp_path / "prefs.jsonl", pairs(2) + [{"prompt": "q?", "chosen": "yes"}] + pairs(3))
    rc, out, err = run_cli(["plan", str(spec(tmp_path, data))])
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines == [f"alignkit plan: error: datasets.prefs: {data} row 3: field 'rejected' missing"]
    assert not (tmp_path / "sweep").exists()  # nothing written


def test_submit_refuses_the_same_before_writing_anything(tmp_path):
    data = jsonl(tmp_path / "prefs.jsonl", pairs(2) + [{"prompt": "q?", "chosen": "yes"}])
    rc, _, err = run_cli(["submit", str(spec(tmp_path, data)), "--executor", "local", "--skip-preflight"])
    assert rc == 2 and "row 3: field 'rejected' missing" in err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("rows,message", [
    ([{"prompt": "q", "chosen": "a", "rejected": 3}], "row 1: field 'rejected' should be str or list, got int"),
    ([{"prompt": "q", "chosen": [{"role": "assistant", "content": " "}], "rejected": "b"}],
     "row 1: field 'chosen' message 1 is empty"),
    ([{"question": "q", "answer": "a"}], "no data format matches its fields (question, answer)"),
    ([{"prompt": "q", "chosen": "same", "rejected": "same"}] * 3,
     "all 3 sampled rows have chosen == rejected (fields 'chosen', 'rejected')"),
])
def test_bad_rows_are_named(tmp_path, rows, message):
    data = jsonl(tmp_path / "prefs.jsonl", rows)
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data))])
    assert rc == 2 and message in err and str(data) in err and len(err.strip().splitlines()) == 1


def test_some_identical_pairs_are_a_warning_with_their_share(tmp_path):
    data = jsonl(tmp_path / "prefs.jsonl", pairs(3) + [{"prompt": "q", "chosen": "same", "rejected": "same"}])
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data))])
    assert rc == 0 and "1 of the first 4 rows (25%) have chosen == rejected; the train job drops them" in err


def test_unpaired_data_is_refused_for_dpo_with_the_reason_and_taken_by_kto(tmp_path):
    data = jsonl(tmp_path / "kto.jsonl", [{"prompt": f"q{i}", "completion": "a", "label": i % 2 == 0} for i in range(4)])
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data, method="dpo"))])
    assert rc == 2
    assert (f"datasets.prefs: {data} (unpaired_preference): method dpo: dpo trains on preference data, not unpaired "
            f"preference data: each row holds one completion with a label") in err
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data, method="kto"))])
    assert rc == 0, err


def test_a_named_format_is_refused_for_a_method_before_any_row_is_read(tmp_path):
    rc, _, err = run_cli(["plan", str(spec(tmp_path, "org/not-cached-data", fmt="unpaired_preference"))])
    assert rc == 2 and "format unpaired_preference (unpaired_preference): method dpo: dpo trains on preference" in err


def test_a_hub_dataset_not_in_the_cache_is_named_unchecked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    rc, _, err = run_cli(["plan", str(spec(tmp_path, "org/not-cached-data"))])
    assert rc == 0
    assert ("alignkit plan: warning: datasets.prefs: rows not checked: org/not-cached-data@main is not in the "
            "Hugging Face cache") in err


def test_a_cached_hub_dataset_is_checked(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "datasets--org--prefs"
    snap = repo / "snapshots" / ("a" * 40) / "data"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    jsonl(snap / "train-00000.jsonl", pairs(1) + [{"prompt": "q", "chosen": "a"}])
    jsonl(snap / "test-00000.jsonl", pairs(2))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    rc, _, err = run_cli(["plan", str(spec(tmp_path, "org/prefs"))])
    assert rc == 2 and "train-00000.jsonl row 2: field 'rejected' missing" in err


def test_a_tokenizer_without_a_chat_template_is_named(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(TINY / name, model / name)
    data = jsonl(tmp_path / "prefs.jsonl", pairs(2))
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data, model=model))])
    assert rc == 2 and (f"models.tiny: template: chat_template asks for the tokenizer's own chat template, but the "
                        f"tokenizer of {model} has none") in err
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data, model=model, template="vicuna"))])
    assert rc == 0, err


def test_a_template_that_cannot_render_a_role_is_named(tmp_path):
    rows = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q"}],
             "chosen": "a", "rejected": "b"}]
    data = jsonl(tmp_path / "prefs.jsonl", rows)
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data, template="mistral"))])
    assert rc == 2
    assert (f"models.tiny (template mistral): cannot render {data} row 1, fields prompt + chosen (roles system, user, "
            f"assistant): mistral template: unsupported role system") in err
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data, template="vicuna"))])
    assert rc == 0, err


def test_implicit_prompt_parquet_and_messages_jsonl_pass(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    conv = [{"prompt": f"q{i}", "chosen": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
             "rejected": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "b"}]}
            for i in range(3)]
    pq.write_table(pa.Table.from_pylist(conv), tmp_path / "train_prefs.parquet")
    rc, _, err = run_cli(["plan", str(spec(tmp_path, tmp_path / "train_prefs.parquet"))])
    assert rc == 0, err
    msgs = jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                          {"role": "assistant", "content": "hello"}]}])
    rc, _, err = run_cli(["plan", str(spec(tmp_path, msgs, method="sft"))])
    assert rc == 0, err


def test_the_check_is_bounded_and_torch_free(tmp_path):
    """A 200,000-row file: only its first rows are read; the check takes well under a second here
    (docs/data.md gives the measured figure) and imports no torch."""
    from alignkit.plan.compiler import load_plan
    from alignkit.plan import datacheck

    big = tmp_path / "big.jsonl"
    with open(big, "w") as f:
        for i in range(200_000):
            f.write(json.dumps({"prompt": f"q{i}", "chosen": "a" * 50, "rejected": "b" * 50}) + "\n")
    plan = load_plan(spec(tmp_path, big))
    t0 = time.perf_counter()
    datacheck.check(plan, "plan")
    took = time.perf_counter() - t0
    assert took < 5.0, took
    torch_loaded = "torch" in sys.modules
    if not torch_loaded:  # (another test in this process may have loaded it already)
        datacheck.check(plan, "plan")
        assert "torch" not in sys.modules


def test_a_mixture_of_two_row_types_is_refused(tmp_path):
    import yaml

    pref = jsonl(tmp_path / "pairs.jsonl", pairs(2))
    kto = jsonl(tmp_path / "kto.jsonl", [{"prompt": "q", "completion": "a", "label": True}] * 2)
    path = spec(tmp_path, pref, method="kto")
    d = yaml.safe_load(path.read_text())
    d["datasets"]["prefs"] = {"source": str(tmp_path), "files": {"a": str(pref), "b": str(kto)}}
    d["grid"]["preference"] = ["a+b", "a", "b"]
    path.write_text(yaml.safe_dump(d))
    rc, _, err = run_cli(["plan", str(path)])
    assert rc == 2 and err.strip().splitlines() == [
        f"alignkit plan: error: datasets.prefs: the mixture a+b mixes preference rows ({pref}) and unpaired "
        f"preference rows ({kto}): a mixture's parts must be of one type"]


def test_a_line_without_end_is_not_read_whole(tmp_path, monkeypatch):
    from alignkit.plan import datacheck

    monkeypatch.setattr(datacheck, "SAMPLE_BYTES", 1 << 16)
    big = tmp_path / "one-line.jsonl"
    big.write_text(json.dumps(pairs(1)[0]) + "\n" + "x" * (1 << 20))  # row 2: 1 MiB, no newline
    rc, _, err = run_cli(["plan", str(spec(tmp_path, big))])
    assert rc == 2 and f"datasets.prefs: {big} row 2 (line 2): longer than 0.0625 MiB" in err


def _write(path: Path, rows: list[dict]) -> Path:
    import csv
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    name = path.name
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    elif name.endswith(".jsonl"):
        jsonl(path, rows)
    elif name.endswith(".json"):
        path.write_text(json.dumps(rows, indent=1))
    elif name.endswith(".csv"):
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["prompt", "chosen", "rejected"])
            w.writeheader()
            w.writerows(rows)
    elif name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif name.endswith(".arrow"):  # datasets' own files are Arrow IPC streams
        table = pa.Table.from_pylist(rows)
        with pa.ipc.new_stream(str(path), table.schema) as w:
            w.write_table(table)
    return path


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz", "d.json", "d.csv", "d.parquet", "d.arrow"])
def test_every_file_type_the_job_reads_is_sampled(tmp_path, name):
    rows = pairs(2) + [{"prompt": "q?", "chosen": "yes", "rejected": None}] + pairs(2)
    data = _write(tmp_path / name, rows)
    rc, _, err = run_cli(["plan", str(spec(tmp_path, data))])
    assert rc == 2 and err.strip().splitlines() == [
        f"alignkit plan: error: datasets.prefs: {data} row 3: field 'rejected' missing"]
    # and the job's own loader (datasets) says the same of the same file
    from jobs.data import load_preferences
    from jobs.errors import JobFailure
    from tests.unit.train_configs import typed_dataset

    cfg = typed_dataset({"name": "prefs", "format": "auto", "source": str(data), "revision": "main", "split": "train"})
    with pytest.raises(JobFailure, match=r"row 3: field 'rejected' missing"):
        load_preferences(cfg, ["mine"], seed=0)
