"""The hostile-input corpus (issue 12 items 3-7 and 10): broken and malicious specs and command
lines. Each case runs the real CLI entry point and must exit 2 with exactly one line on stderr
naming the file, line and key (or the argument) at fault, without a traceback, writing nothing."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from alignkit.cli.main import main
from alignkit.spec.paths import CHECKOUT
from tests.fixtures.spec_fixtures import base, write

ROOT = Path(__file__).resolve().parents[2]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse errors
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Run in an empty directory with the judge key set (so `plan` prints no warning)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEY", "secret")
    monkeypatch.setenv("ALIGNKIT_MAX_JOBS", "")  # recorded, so cases that set it are undone afterwards
    monkeypatch.delenv("ALIGNKIT_MAX_JOBS")
    return tmp_path


def assert_refused(rc: int, out: str, err: str, prefix: str, fragment: str) -> str:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith(prefix), (lines[0], prefix)
    assert fragment in lines[0], (lines[0], fragment)
    return lines[0]


def _set(path: str, value):
    def mutate(d):
        *keys, last = path.split(".")
        cur = d
        for k in keys:
            cur = cur[int(k)] if isinstance(cur, list) else cur.setdefault(k, {})
        if isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value
        return d
    return mutate


def _add(section: str, name: str, entry: dict):
    """A further (unused) entry under `section`: its name is the only problem."""
    def mutate(d):
        d[section][name] = entry
        return d
    return mutate


def raw(edit):
    """A mutation of the YAML text rather than of the parsed spec."""
    edit.raw = True
    return edit


def _append(text: str):
    return raw(lambda t: t + text)


def _replace(old: str, new: str):
    def edit(t):
        assert old in t
        return t.replace(old, new, 1)
    return raw(edit)


def _big_grid(d):
    """10^9 training runs in ~100 kB: 1000 models x 1000 datasets x 1000 seeds."""
    d["models"] = {f"m{i}": {"source": "org/m"} for i in range(1000)}
    d["datasets"] = {f"d{i}": {"format": "normalized", "source": "org/d"} for i in range(1000)}
    d["grid"].update(model=list(d["models"]), dataset=list(d["datasets"]), seed=list(range(1000)),
                     preference=["helpful"], method=["sft"], peft=["lora"])
    d["merges"] = []
    return d


def _subsets(d):
    d["datasets"]["hh"]["subsets"] = {"helpful": "helpful-base"}
    return d


BOMB = 'lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"l{i}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9))

# (id, mutation of the base spec or (raw) of its YAML text, key path named, message fragment)
SPEC_CASES = [
    # item 3: names and values that reach scripts and file names
    ("name-dot", _set("name", "."), "name", "sweep name '.' must start with a letter or digit"),
    ("name-dotdot", _set("name", ".."), "name", "sweep name '..' must start"),
    ("name-trailing-newline", _set("name", "unit\n"), "name", "control character '\\n'"),
    ("name-slash", _set("name", "a/b"), "name", "sweep name 'a/b'"),
    ("name-option", _set("name", "-rf"), "name", "sweep name '-rf'"),
    ("name-too-long", _set("name", "x" * 65), "name", "at most 64"),
    ("name-nul", _set("name", "a\x00b"), "name", "control character '\\x00'"),
    ("model-name-dotdot", _add("models", "..", {"source": "org/m"}), "models...", "name '..' must start"),
    ("dataset-name-newline", _add("datasets", "bt\nrm -rf ~", {"format": "normalized", "source": "org/d"}),
     "datasets.bt\\nrm -rf ~", "control character '\\n' in key"),
    ("method-name-tab", lambda d: (d["methods"].update({"s\tft": d["methods"]["sft"]}), d)[1], "methods.s\\tft",
     "control character '\\t'"),
    ("peft-name-space", _add("peft", "lo ra", {}), "peft.lo ra", "name 'lo ra' must start"),
    ("merge-name-path", _set("merges.0.name", "../../etc"), "merges[0].name", "merge name '../../etc'"),
    ("benchmark-name-semicolon", lambda d: (d["evals"]["benchmarks"].update({"x;id": {"type": "lm_eval", "task": "t", "metric": "acc"}}), d)[1],
     "evals.benchmarks.x;id", "benchmark name 'x;id'"),
    ("judge-name-dollar", lambda d: (d["evals"]["judges"].update({"$(id)": {"type": "hf", "source": "org/j"}}), d)[1],
     "evals.judges.$(id)", "judge name '$(id)'"),
    ("output-dir-newline", _set("output_dir", "runs/x\n#SBATCH --wrap=id"), "output_dir", "control character '\\n'"),
    ("output-dir-in-package", _set("output_dir", str(CHECKOUT / "alignkit" / "out")), "output_dir",
     "inside this checkout's alignkit/"),
    ("output-dir-jobs-package", _set("output_dir", str(CHECKOUT / "jobs")), "output_dir", "inside this checkout's jobs/"),
    ("output-dir-git", _set("output_dir", str(CHECKOUT / ".git" / "x")), "output_dir", "inside this checkout's .git/"),
    ("output-dir-checkout", _set("output_dir", str(CHECKOUT)), "output_dir", "which holds this checkout"),
    ("output-dir-root", _set("output_dir", "/"), "output_dir", "which holds this checkout"),
    ("output-dir-relative-dotdot", lambda d: _set("output_dir", os.path.relpath(CHECKOUT / "tests" / "x"))(d),
     "output_dir", "inside this checkout's tests/"),
    ("partition-newline", _set("resources.train.partition", "debug\n#SBATCH --uid=0"), "resources.train.partition",
     "control character '\\n'"),
    ("partition-space", _set("resources.eval.partition", "debug --wrap=id"), "resources.eval.partition",
     "partition 'debug --wrap=id'"),
    ("override-partition-cr", _set("resources.overrides", [{"stage": "train", "partition": "a\rb"}]),
     "resources.overrides[0].partition", "control character '\\r'"),
    ("model-source-newline", _set("models.m1.source", "org/m\necho pwned"), "models.m1.source", "control character"),
    ("model-revision-line-separator", _set("models.m1.revision", "main\u2028x"), "models.m1.revision",
     "control character '\\u2028'"),
    ("benchmark-task-escape", _set("evals.benchmarks.mmlu.task", "mmlu\x1b[2J"), "evals.benchmarks.mmlu.task",
     "control character '\\x1b'"),
    ("judge-url-del", _set("evals.judges.j.base_url", "http://x\x7f"), "evals.judges.j.base_url", "control character '\\x7f'"),
    ("where-value-newline", _set("merges.0.where", {"dataset": "hh\n"}), "merges[0].where.dataset", "control character"),
    ("subset-dir-nel", _set("datasets.hh.subsets.helpful", "helpful\x85base"), "datasets.hh.subsets.helpful",
     "control character '\\x85'"),
    ("unknown-key-with-newline", _set("evil\nkey", 1), "evil\\nkey", "unknown key 'evil\\nkey'"),
    # item 4: hostile YAML and oversized grids
    ("alias-bomb", _append(BOMB), "l8", "expands to more than 100000 YAML nodes through aliases"),
    ("recursive-alias", _append("zz: &a [*a]\n"), "zz", "an alias refers to its own anchor"),
    ("duplicate-top-key", _append("name: again\n"), "name", "duplicate key 'name' (first at line 1"),
    ("duplicate-nested-key", _replace("  max_steps: 700\n", "  max_steps: 700\n  max_steps: 7\n"), "training.max_steps",
     "duplicate key 'max_steps' (first at line"),
    ("duplicate-mapping-key", _replace("  m1:\n", "  m2: {source: org/x}\n  m1:\n"), "models.m2", "duplicate key 'm2'"),
    ("deep-flow-nesting-5000", _append("deep: " + "[" * 5000 + "]" * 5000 + "\n"), "", "nest"),
    ("deep-flow-nesting", _append("deep: " + "[" * 500 + "]" * 500 + "\n"), "deep", "nested deeper than 64 levels"),
    ("deep-block-nesting", _append("deep:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(80))), "deep",
     "nested deeper than 64 levels"),
    ("huge-integer", _append("max_jobs: " + "9" * 5000 + "\n"), "", "unreadable value"),
    ("int-beyond-64-bits", _set("training.max_steps", 2**70), "training.max_steps", "out of range (beyond 64 bits)"),
    ("grid-10-to-the-9", _big_grid, "grid", "beyond the limit of 1,000,000"),
    ("grid-over-spec-max-jobs", _set("max_jobs", 100), "grid", "beyond the limit of 100 "),
    ("max-jobs-zero", _set("max_jobs", 0), "max_jobs", "must be positive"),
    ("nul-byte-in-file", _append("description: a\x00b\n"), "", "unacceptable character #x0000"),
    ("two-documents", _append("---\nname: other\n"), "", "YAML syntax error"),
    ("python-tag", _append("description: !!python/object/apply:os.system ['id']\n"), "", "YAML syntax error"),
    ("empty-zip-group", _set("zip", [{}]), "zip[0]", "an empty zip group"),
    # item 5: NaN, infinities, out-of-range numbers
    ("lr-nan", _set("methods.sft.learning_rate", math.nan), "methods.sft.learning_rate", "must be a finite number"),
    ("lr-inf", _set("methods.sft.learning_rate", math.inf), "methods.sft.learning_rate", "must be a finite number"),
    ("lr-nan-string", _set("methods.sft.learning_rate", "nan"), "methods.sft.learning_rate", "must be a finite number"),
    ("lr-overflow-string", _set("methods.dpo.learning_rate", "1e999"), "methods.dpo.learning_rate", "finite number"),
    ("lr-negative", _set("methods.dpo.learning_rate", -1e-4), "methods.dpo.learning_rate", "must be positive"),
    ("beta-minus-inf", _set("methods.dpo.beta", -math.inf), "methods.dpo.beta", "must be a finite number"),
    ("grad-norm-nan", _set("methods.dpo.max_grad_norm", math.nan), "methods.dpo.max_grad_norm", "finite number"),
    ("grad-norm-negative", _set("methods.dpo.max_grad_norm", -1.0), "methods.dpo.max_grad_norm", "zero or more"),
    ("warmup-inf", _set("methods.sft.warmup_ratio", math.inf), "methods.sft.warmup_ratio", "finite number"),
    ("dropout-nan", _set("methods.sft.lora.dropout", math.nan), "methods.sft.lora.dropout", "finite number"),
    ("adam-beta1-one", _set("methods.sft.adam_beta1", 1.0), "methods.sft.adam_beta1", "must be in [0, 1), got 1.0"),
    ("adam-beta2-negative", _set("methods.dpo.adam_beta2", -0.1), "methods.dpo.adam_beta2", "must be in [0, 1)"),
    ("weight-decay-negative", _set("methods.sft.weight_decay", -0.01), "methods.sft.weight_decay", "zero or more"),
    ("merge-t-nan", _set("merges.0.parameters.t", math.nan), "merges[0].parameters.t", "must be a finite number"),
    ("merge-weights-inf", lambda d: (d["merges"].append({"name": "dare", "method": "dare_ties",
                                                         "combine": {"preference": ["harmless", "helpful"]},
                                                         "parameters": {"density": 0.5, "weights": [math.inf, 1]}}), d)[1],
     "merges[1].parameters.weights[0]", "must be a finite number"),
    ("seed-2-to-the-32", _set("grid.seed", [0, 2**32]), "grid.seed[1]", "seed must be an integer in [0, 2^32)"),
    ("seed-negative", _set("grid.seed", [-1]), "grid.seed[0]", "seed must be an integer in [0, 2^32)"),
    ("mem-absurd", _set("resources.train.mem_gb", 10**9), "resources.train.mem_gb", "beyond the largest accepted"),
    ("gpus-absurd", _set("resources.train.gpus", 1000), "resources.train.gpus", "beyond the largest accepted"),
    ("cpus-negative", _set("resources.eval.cpus", -4), "resources.eval.cpus", "must be positive, got -4"),
    ("nodes-zero", _set("resources.merge.nodes", 0), "resources.merge.nodes", "must be positive"),
    ("throttle-negative", _set("resources.judge.array_parallelism", -1), "resources.judge.array_parallelism", "positive"),
    ("time-over-a-year", _set("resources.train.time", "9999:00:00"), "resources.train.time", "more than a year"),
    ("time-minutes-absurd", _set("resources.train.time", 10**8), "resources.train.time", "more than a year"),
    ("estimate-negative", _set("resources.train.estimate", -5), "resources.train.estimate", "must be positive"),
    ("judge-timeout-nan", _set("evals.judges.j.timeout_s", math.nan), "evals.judges.j.timeout_s", "finite number"),
    ("judge-rpm-zero", _set("evals.judges.j.requests_per_minute", 0), "evals.judges.j.requests_per_minute", "positive"),
    ("judge-retries-negative", _set("evals.judges.j.max_retries", -1), "evals.judges.j.max_retries", "zero or more"),
    ("judge-key-env-not-a-name", _set("evals.judges.j.api_key_env", "A B"), "evals.judges.j.api_key_env",
     "not an environment variable name"),
    ("dataset-limit-negative", _set("datasets.bt.limit", -5), "datasets.bt.limit", "must be positive"),
    ("num-prompts-negative", _set("evals.benchmarks.ae.num_prompts", -1), "evals.benchmarks.ae.num_prompts", "positive"),
    ("save-steps-negative", _set("training.save_steps", -100), "training.save_steps", "must be positive"),
    # item 6: internal fields are not keys
    ("internal-path", _set("path", "/etc"), "path", "unknown key 'path'"),
    ("internal-text", _set("text", "x"), "text", "unknown key 'text'"),
    ("internal-lines", _set("lines", {"a": 1}), "lines", "unknown key 'lines'"),
    # item 7: what plan can know
    ("preference-without-subset", _subsets, "datasets.hh.subsets", "no subset for preference 'harmless'"),
    ("path-relative-to-checkout", _set("models.m1.source", "assets/tiny-llama"), "models.m1.source",
     f"it exists relative to {CHECKOUT}"),
    ("explicit-path-relative-to-checkout", _set("datasets.bt.source", "./assets/smoke-data/pku-saferlhf"),
     "datasets.bt.source", "not found in"),
]


def _line_of(text: str, key: str) -> int | None:
    """The line of a key path's last key, found with PyYAML's own composer (None where the path
    has keys with dots or escapes, or cannot be walked)."""
    tokens = re.findall(r"[^.\[\]]+|\[\d+\]", key)
    if "\\" in key or "".join(t if t.startswith("[") else "." + t for t in tokens).lstrip(".") != key:
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for token in tokens:
        if token.startswith("[") and isinstance(node, yaml.SequenceNode):
            node = node.value[int(token[1:-1])]
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == token), None)
            if pair is None:
                return None
            line, node = pair[0].start_mark.line + 1, pair[1]
        else:
            return None
    return line


# Cases whose line is not the key's: where nesting passed the limit, a duplicate's second line
NOT_THE_KEY_LINE = {"deep-flow-nesting", "deep-block-nesting", "duplicate-top-key", "duplicate-nested-key",
                    "duplicate-mapping-key", "recursive-alias"}


@pytest.mark.parametrize("case_id,mutation,key,fragment", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_hostile_spec_is_refused_in_one_line(sandbox, case_id, mutation, key, fragment):
    text = (mutation(yaml.safe_dump(base(), sort_keys=False)) if getattr(mutation, "raw", False)
            else yaml.safe_dump(mutation(base()), sort_keys=False))
    path = write(sandbox, text)
    before = tree(sandbox)
    started = time.perf_counter()
    rc, out, err = run_cli(["plan", str(path)])
    elapsed = time.perf_counter() - started
    line = assert_refused(rc, out, err, f"alignkit plan: error: {path}", fragment)
    assert elapsed < 5, f"took {elapsed:.1f} s"
    assert tree(sandbox) == before
    if key:  # file:line: key: message, the line being the key's
        m = re.match(rf"alignkit plan: error: {re.escape(str(path))}:(\d+): {re.escape(key)}[\[.]*[^ ]*: ", line)
        assert m, line
        expected = None if case_id in NOT_THE_KEY_LINE else _line_of(text, key)
        if expected is not None:
            assert int(m.group(1)) == expected, (line, expected)


def test_corpus_size():
    assert len(SPEC_CASES) + len(CLI_CASES) + len(FILE_CASES) >= 100


# ---- the spec path itself ------------------------------------------------------------------------
def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "spec.yaml")
    return tmp / "spec.yaml"


def _too_big(tmp: Path) -> Path:
    return write(tmp, yaml.safe_dump(base()) + "#" * (1 << 20) + "\n")


def _latin1(tmp: Path) -> Path:
    path = tmp / "spec.yaml"
    path.write_bytes(yaml.safe_dump(base()).encode() + "description: caf\xe9\n".encode("latin-1"))
    return path


def _symlink_to_dev_zero(tmp: Path) -> Path:
    (tmp / "spec.yaml").symlink_to("/dev/zero")
    return tmp / "spec.yaml"


def _unreadable(tmp: Path) -> Path:
    path = write(tmp, base())
    path.chmod(0)
    return path


def _directory(tmp: Path) -> Path:
    (tmp / "spec.yaml").mkdir()
    return tmp / "spec.yaml"


FILE_CASES = [
    ("dev-zero", lambda tmp: Path("/dev/zero"), "is a character device, not a regular file"),
    ("dev-null-symlink", _symlink_to_dev_zero, "is a character device"),
    ("fifo", _fifo, "is a FIFO, not a regular file; refused without reading it"),
    ("over-size-cap", _too_big, "larger than 1048576 bytes"),
    ("not-utf8", _latin1, "not UTF-8 text (byte 0xe9"),
    ("directory", _directory, "is a directory"),
    ("missing", lambda tmp: tmp / "nope.yaml", "no such file"),
]
if os.geteuid() != 0:
    FILE_CASES.append(("unreadable", _unreadable, "cannot open: Permission denied"))


@pytest.mark.parametrize("case_id,make,fragment", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_hostile_spec_path_is_refused_without_reading(sandbox, case_id, make, fragment):
    path = make(sandbox)
    before = tree(sandbox)
    started = time.perf_counter()
    rc, out, err = run_cli(["plan", str(path)])
    assert time.perf_counter() - started < 5
    line = assert_refused(rc, out, err, f"alignkit plan: error: {path}", fragment)
    if case_id == "not-utf8":
        assert line.startswith(f"alignkit plan: error: {path}:{len(yaml.safe_dump(base()).splitlines()) + 1}: ")
    assert tree(sandbox) == before


# ---- command-line arguments (item 10) ------------------------------------------------------------
def _spec(tmp: Path) -> str:
    return str(write(tmp, base()))


def _file(tmp: Path) -> str:
    (tmp / "a-file").write_text("x")
    return str(tmp / "a-file")


def _profile(tmp: Path, extra: str) -> str:
    (tmp / "profile.yaml").write_text("executor: slurm\n" + extra)
    return str(tmp / "profile.yaml")


def _pbs_profile(tmp: Path) -> str:
    (tmp / "profile.yaml").write_text("executor: pbs\n")
    return str(tmp / "profile.yaml")


# (id, argv built from the sandbox, fragment of the one line on stderr)
CLI_CASES = [
    ("watch-negative", lambda t: ["status", str(t), "--watch", "-1"], "argument --watch: must be a positive finite number"),
    ("watch-nan", lambda t: ["status", str(t), "--watch", "nan"], "argument --watch: must be a positive finite number"),
    ("watch-inf", lambda t: ["status", str(t), "--watch", "inf"], "argument --watch: must be a positive finite number"),
    ("watch-zero", lambda t: ["status", str(t), "--watch", "0"], "argument --watch: must be a positive"),
    ("watch-word", lambda t: ["status", str(t), "--watch", "soon"], "argument --watch: expected a number of seconds"),
    ("status-stage", lambda t: ["status", str(t), "--stage", "deploy"], "argument --stage: invalid choice: 'deploy'"),
    ("status-dir-is-file", lambda t: ["status", _file(t)], "exists and is not a directory"),
    ("collect-out-is-file", lambda t: ["collect", str(t), "--out", _file(t)], "argument --out: "),
    ("collect-dir-is-file", lambda t: ["collect", _file(t)], "exists and is not a directory"),
    ("collect-bad-format", lambda t: ["collect", str(t), "--format", "xlsx"], "--format 'xlsx': choose from"),
    ("collect-yes-without-prune", lambda t: ["collect", str(t), "--yes"], "--yes only goes with --prune"),
    ("plan-out-is-file", lambda t: ["plan", _spec(t), "-o", _file(t)], "argument -o/--output-dir: "),
    ("plan-out-in-package", lambda t: ["plan", _spec(t), "-o", str(CHECKOUT / "alignkit")],
     "--output-dir: "),
    ("plan-out-newline", lambda t: ["plan", _spec(t), "-o", "runs/a\nb"], "argument --output-dir: control character"),
    ("plan-no-spec", lambda t: ["plan"], "the following arguments are required: spec"),
    ("plan-unknown-flag", lambda t: ["plan", _spec(t), "--fast"], "unrecognized arguments: --fast"),
    ("plan-unknown-profile", lambda t: ["plan", _spec(t), "--profile", "nope"], "unknown profile 'nope'"),
    ("plan-profile-newline", lambda t: ["plan", _spec(t), "--profile", "dev\nx"], "argument --profile: control character"),
    ("submit-out-is-file", lambda t: ["submit", _spec(t), "-o", _file(t)], "argument -o/--output-dir: "),
    ("submit-bad-executor", lambda t: ["submit", _spec(t), "--executor", "ssh"], "argument --executor: invalid choice"),
    ("logs-dir-is-file", lambda t: ["logs", "abc", "-d", _file(t)], "argument -d/--sweep-dir: "),
    ("logs-job-newline", lambda t: ["logs", "a\nb", "-d", str(t)], "argument job: control character"),
    ("logs-no-job", lambda t: ["logs"], "the following arguments are required: JOB"),
    ("cancel-dir-is-file", lambda t: ["cancel", _file(t)], "exists and is not a directory"),
    ("cancel-stage", lambda t: ["cancel", str(t), "--stage", "all"], "argument --stage: invalid choice"),
    ("release-dir-is-file", lambda t: ["release", _file(t)], "exists and is not a directory"),
    ("release-job-nul", lambda t: ["release", str(t), "a\x00"], "argument jobs: control character"),
    ("prefetch-no-spec", lambda t: ["prefetch"], "the following arguments are required: spec"),
    ("unknown-command", lambda t: ["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ("spec-arg-newline", lambda t: ["plan", "spec\n.yaml"], "argument spec: control character"),
    ("profile-dev-zero", lambda t: ["plan", _spec(t), "--profile", "/dev/zero"], "/dev/zero: is a character device"),
    ("profile-internal-path-key", lambda t: ["plan", _spec(t), "--profile", _profile(t, "path: /etc\n")],
     "profile.yaml:2: path: unknown key 'path'"),
    ("profile-partition-newline", lambda t: ["plan", _spec(t), "--profile", _profile(t, "partition: \"a\\nb\"\n")],
     "profile.yaml:2: partition: control character '\\n'"),
    ("profile-sbatch-value-newline", lambda t: ["plan", _spec(t), "--profile",
                                                _profile(t, "sbatch: {comment: \"x\\n#SBATCH --uid=0\"}\n")],
     "profile.yaml:2: sbatch.comment: control character"),
    ("profile-duplicate-key", lambda t: ["plan", _spec(t), "--profile", _profile(t, "executor: local\n")],
     "profile.yaml:2: executor: duplicate key 'executor'"),
    ("profile-unknown-executor", lambda t: ["plan", _spec(t), "--profile", _pbs_profile(t)],
     "profile.yaml:1: executor: unknown executor 'pbs' (known: local, slurm)"),  # the registered backends
    ("max-jobs-env-word", lambda t: (os.environ.__setitem__("ALIGNKIT_MAX_JOBS", "lots"), ["plan", _spec(t)])[1],
     "$ALIGNKIT_MAX_JOBS: must be a positive integer, got 'lots'"),
    ("max-jobs-env-small", lambda t: (os.environ.__setitem__("ALIGNKIT_MAX_JOBS", "10"), ["plan", _spec(t)])[1],
     "grid: the grid expands to 288 jobs, beyond the limit of 10"),
]


@pytest.mark.parametrize("case_id,make,fragment", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_is_an_argument_error(sandbox, case_id, make, fragment):
    argv = make(sandbox)
    before = tree(sandbox)
    rc, out, err = run_cli(argv)
    assert_refused(rc, out, err, f"alignkit{' ' + argv[0] if argv[0] != 'frobnicate' else ''}", fragment)
    assert tree(sandbox) == before


# ---- submit refuses what plan only warns about (item 7) ------------------------------------------
def test_unset_judge_key_warns_at_plan_and_refuses_submit(sandbox, monkeypatch):
    monkeypatch.delenv("KEY")
    path = write(sandbox, base())
    rc, out, err = run_cli(["plan", str(path)])
    assert rc == 0 and "jobs ->" in out
    line = next(x for x in err.splitlines() if "api_key_env" in x)
    assert re.match(rf"alignkit plan: warning: {re.escape(str(path))}:\d+: evals.judges.j.api_key_env: \$KEY is not "
                    rf"set \(judge 'j' calls its API with it\)$", line), line
    before = tree(sandbox)
    rc, out, err = run_cli(["submit", str(path), "-o", str(sandbox / "sweep"), "--executor", "local",
                            "--skip-preflight"])
    assert_refused(rc, out, err, f"alignkit submit: error: {path}:", "evals.judges.j.api_key_env: $KEY is not set")
    assert tree(sandbox) == before


def test_missing_local_path_warns_at_plan_and_refuses_submit(sandbox):
    d = base()
    d["models"]["m1"]["source"] = "../not-cloned-yet/model"
    path = write(sandbox, d)
    rc, out, err = run_cli(["plan", str(path)])
    assert rc == 0
    assert f"warning: {path}:" in err and "models.m1.source: local path '../not-cloned-yet/model' not found in " \
                                         f"{sandbox} (the spec file's folder" in err
    before = tree(sandbox)
    rc, out, err = run_cli(["submit", str(path), "--executor", "local", "--skip-preflight"])
    assert_refused(rc, out, err, f"alignkit submit: error: {path}:", "models.m1.source: local path")
    assert tree(sandbox) == before


# ---- what must still work ----------------------------------------------------------------------------
def test_free_text_may_span_lines(sandbox):
    path = write(sandbox, dict(base(), description="line one\nline two\twith a tab"))
    rc, out, err = run_cli(["plan", str(path)])
    assert rc == 0, err


def test_yaml_merge_keys_are_not_duplicate_keys(sandbox):
    text = yaml.safe_dump(base(), sort_keys=False).replace(
        "training:\n  max_steps: 700\n  save_steps: 100\n",
        "training:\n  <<: {max_steps: 700, save_steps: 50}\n  save_steps: 100\n")
    assert "<<:" in text
    rc, out, err = run_cli(["plan", str(write(sandbox, text))])
    assert rc == 0, err


def test_smoke_and_full_studies_still_plan_and_json_is_strict(sandbox):
    for name in ("smoke", "full"):
        rc, out, err = run_cli(["plan", str(ROOT / "sweeps" / f"{name}.yaml"), "--json"])
        assert rc == 0, err
        assert "NaN" not in out and "Infinity" not in out


def test_largest_accepted_grid_plans_and_one_more_is_refused(sandbox, monkeypatch):
    d = base()
    d["evals"]["benchmarks"] = {}
    d["merges"] = []
    path = write(sandbox, d)
    # 64 runs, no evals: one job each (the refusal counts jobs, not the list-length bound of 66)
    monkeypatch.setenv("ALIGNKIT_MAX_JOBS", "64")
    assert run_cli(["plan", str(path)])[0] == 0
    monkeypatch.setenv("ALIGNKIT_MAX_JOBS", "63")
    rc, out, err = run_cli(["plan", str(path)])
    assert_refused(rc, out, err, f"alignkit plan: error: {path}:", "grid: the grid expands to 64 jobs, beyond "
                                                                   "the limit of 63")


# ---- real processes: exit status and stderr of the installed entry point -----------------------------
@pytest.mark.parametrize("make", [lambda t: write(t, yaml.safe_dump(base()) + BOMB), _fifo,
                                  lambda t: Path("/dev/zero"),
                                  lambda t: write(t, yaml.safe_dump(_big_grid(base())))],
                         ids=["alias-bomb", "fifo", "dev-zero", "grid-10-to-the-9"])
def test_refusals_are_fast_in_a_real_process(tmp_path, make):
    path = make(tmp_path)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "alignkit", "plan", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed = time.perf_counter() - started
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""
    assert elapsed < 10, f"{elapsed:.1f} s"
