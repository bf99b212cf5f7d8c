"""AlpacaEval: the model's answers to the 805 instructions, scored by the `alpaca_eval` package itself.

Generation (eval job, GPU). Instructions come from the reference outputs file, a JSON list of
{"instruction", "output", "generator", "dataset"}: by default `alpaca_eval_gpt4_baseline.json` of the
hub dataset tatsu-lab/alpaca_eval (AlpacaEval 2: GPT-4 Turbo = gpt4_1106_preview answers; the paper
says "win rate against GPT-4"); `reference: alpaca_eval.json` gives AlpacaEval 1 (text-davinci-003).
Greedy, max_new_tokens 2048 unless the spec says otherwise (AlpacaEval's own model configs, e.g.
alpaca_eval 0.6.6 models_configs/vicuna-7b-v1.3/configs.yaml `max_new_tokens: 2048`), each answer's
budget capped by the context, the instruction never cut (jobs/eval/generate.py). Answers are
stripped (evaluate_from_model's is_strip_output) and written in AlpacaEval's format.

Scoring (judge job, CPU) is `alpaca_eval.main.evaluate` with:
  * `annotators_config`: one of the package's annotator configs (default
    weighted_alpaca_eval_gpt4_turbo, AlpacaEval 2's; alpaca_eval_gpt4 is AlpacaEval 1's): its prompt,
    output-order randomisation, parser and model; the judge spec only says where requests go;
  * `caching_path`: the package's own annotation cache, one file per eval job under the sweep's
    judge cache, so a rerun or requeue re-asks nothing (seeding that file with published
    annotations reproduces the leaderboard with zero requests: test_alpaca_eval_official.py);
  * `fn_metric`: its `get_winrate` (preference 1..2, ties 1.5 count half, and the discrete win rate),
    behind a guard: when no annotation has a preference (every request failed or every reply was
    unparseable) the job fails with that reason instead of scoring nothing;
  * then its `metrics.get_length_controlled_winrate` on the same annotations (AlpacaEval 2's LC win
    rate), fed the two files it downloads (df_gamed.csv, instruction_difficulty.csv of the same hub
    dataset, found offline: the HF cache or the `source` folder) and with save_weights_dir=None (it
    would otherwise write into the installed package).
Where requests go: an `openai` judge hands its base_url and key to the package's own
openai_completions (the annotator config's model, max_tokens, logprobs); an `hf` judge (offline
smoke studies) replaces the config's completion function with a local model that returns the
log-probabilities of the parser's tokens (the "m"/"M" of the weighted annotator) or greedy text,
so the package's parser and metrics still do the scoring.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import sys
import time
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

from alignkit.contract import expect
from alignkit.contract.common import JudgeClientConfig
from alignkit.plugins.benchmarks.alpaca_eval import AlpacaEval, annotator, reference_file
from jobs.errors import JobFailure
from jobs.eval.sources import read_json, resolve

FIELDS = ("instruction", "output", "generator", "dataset")
# Instructions go to the model as one user turn through its template (what training used).
USE_TEMPLATE = True
LC_FILES = ("df_gamed.csv", "instruction_difficulty.csv")  # metrics/glm_winrate.py hf_hub_download calls
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------- generation (eval job)

def load(cfg: Any, where: str) -> list[dict]:
    """The reference outputs (and so the instructions), in their file's order (cfg: the typed benchmark config)."""
    path = resolve(cfg.source, reference_file(cfg), where, cfg.revision)
    rows = read_json(path, where)
    if not isinstance(rows, list):
        raise JobFailure(f"{where}: {path} should be a JSON list of {{{', '.join(FIELDS)}}} objects")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise JobFailure(f"{where}: {path} item {i} is not an object")
        for field in ("instruction", "output"):
            if not isinstance(row.get(field), str):
                raise JobFailure(f"{where}: {path} item {i}: field {field} missing or not a string")
    limit = cfg.num_prompts
    return rows[:int(limit)] if limit else rows


def prompts(tokenizer: Any, cfg: Any, where: str, refs: list[dict] | None = None) -> tuple[list[str], int]:
    """(the rendered prompts, max_new_tokens): what generation sends, and `alignkit preview` shows."""
    from jobs.eval.generate import render_prompt

    refs = load(cfg, where) if refs is None else refs
    return ([render_prompt(tokenizer, r["instruction"], USE_TEMPLATE) for r in refs],
            AlpacaEval().generation_length(cfg))


def generate(generator: Any, tokenizer: Any, cfg: Any, where: str, generator_name: str) -> tuple[dict, list[dict]]:
    from jobs.eval.generate import generate_all

    refs = load(cfg, where)
    prompts_, max_new = prompts(tokenizer, cfg, where, refs)
    outs, fit = generate_all(generator, tokenizer, prompts_, max_new)
    rows = [{"instruction": r["instruction"], "output": o.strip(), "generator": generator_name,
             "dataset": r.get("dataset")} for r, o in zip(refs, outs, strict=True)]
    entry = {"n": len(rows), "judged": True, "max_new_tokens": max_new, "use_template": USE_TEMPLATE,
             "decoding": "greedy", "generator": generator_name,
             "reference": reference_record(cfg, refs), **fit}
    return entry, rows


def reference_record(cfg: Any, refs: list[dict]) -> dict:
    src = cfg.source
    file = Path(src).name if src and Path(src).is_file() else reference_file(cfg)
    return {"source": src, "file": file,
            "revision": cfg.revision, "generator": refs[0].get("generator") if refs else None}


# ---------------------------------------------------------------- the package

def _pkg_resources_shim() -> None:
    """alpaca_eval 0.6.6 utils.py imports pkg_resources (gone from setuptools >= 81) for two helpers:
    parse_version and get_distribution(name).version. Provide exactly those when it is missing."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from packaging.version import parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = parse
        shim.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = shim


def package() -> Any:
    _pkg_resources_shim()
    try:
        import alpaca_eval.main  # noqa: F401
    except ImportError as exc:
        raise JobFailure(f"alpaca_eval is not installed ({exc}); install alignkit[eval]") from None
    import alpaca_eval

    return alpaca_eval


def annotator_config(name: str, where: str) -> tuple[Path, str, dict]:
    """(configs.yaml path, annotator name, its config) of one of the package's annotator configs."""
    if not NAME_RE.match(name or ""):
        raise JobFailure(f"{where}.annotator: {name!r} is not an alpaca_eval annotator config name")
    ae = package()
    path = Path(ae.constants.EVALUATORS_CONFIG_DIR) / name / "configs.yaml"
    if not path.is_file():
        raise JobFailure(f"{where}.annotator: alpaca_eval {version()} has no annotator config {name!r}")
    import yaml

    configs = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(configs, dict) or len(configs) != 1:
        raise JobFailure(f"{where}.annotator: {path} should define exactly one annotator")
    (single, conf), = configs.items()
    return path, single, conf


def version() -> str:
    return importlib.metadata.version("alpaca_eval")


# ---------------------------------------------------------------- where requests go

def _openai_kwargs(judge_cfg: JudgeClientConfig, model_name: str, where: str) -> dict:
    """Decoding kwargs for the package's openai_completions: this judge's endpoint and key."""
    import os

    if judge_cfg.model and judge_cfg.model != model_name:
        raise JobFailure(f"{where}.judge.model: {judge_cfg.model!r} differs from the annotator config's model "
                         f"{model_name!r}; AlpacaEval's annotator config decides the judge model")
    var = judge_cfg.api_key_env
    key = os.environ.get(var) if var else "unused"  # a keyless local server still gets a bearer header
    if not key:
        raise JobFailure(f"{where}.judge: environment variable {var} (api_key_env) is not set")
    # os.devnull is not a file: the package then builds its client from these two values
    return {"client_config_path": os.devnull, "openai_api_keys": [key], "openai_api_base": judge_cfg.base_url}


def _chat_parts(prompt: str) -> tuple[str, str]:
    from alpaca_eval.utils import prompt_to_chatml

    msgs = prompt_to_chatml(prompt)
    if [m["role"] for m in msgs] not in (["system", "user"], ["user"]) or any("name" in m for m in msgs):
        raise JobFailure("alpaca_eval: a local judge takes a system and a user turn; this annotator's prompt has "
                         + ", ".join(m["role"] for m in msgs))
    return (msgs[0]["content"] if len(msgs) == 2 else ""), msgs[-1]["content"]


def local_completions(judge: Any, single: Any) -> Callable[..., dict]:
    """A completion function for one of the package's single annotators, answered by a local hf judge.

    With the package's logprob_parser it returns an OpenAI-shaped choice whose top_logprobs are the
    log-likelihoods of the parser's tokens ("m", "M"), all of them (an API returns its top 5 tokens,
    which for GPT-4 Turbo hold both); otherwise greedy text of the config's max_tokens.
    """
    parser = getattr(single.fn_completion_parser, "func", None)
    kw = getattr(single.fn_completion_parser, "keywords", {})
    tokens = list(dict.fromkeys([kw["numerator_token"], *kw["denominator_tokens"]])) \
        if getattr(parser, "__name__", "") == "logprob_parser" else None

    def completions(prompts: list[str], max_tokens: int = 64, **_: Any) -> dict:
        t0 = time.time()
        texts, full = [], []
        for prompt in prompts:
            system, user = _chat_parts(prompt)
            if tokens:
                lp = judge.choice_logprobs(system, user, tokens)
                best = max(lp, key=lp.get)
                top = [{"token": t, "logprob": v} for t, v in sorted(lp.items(), key=lambda kv: -kv[1])]
                full.append({"text": best, "logprobs": {"content": [{"token": best, "logprob": lp[best],
                                                                     "top_logprobs": top}]}})
                texts.append(best)
            else:
                texts.append(judge.generate(system, user, max_tokens))
                full.append({"text": texts[-1]})
        n = max(len(prompts), 1)
        return {"completions": texts, "completions_all": full, "price_per_example": [0.0] * len(prompts),
                "time_per_example": [(time.time() - t0) / n] * len(prompts)}

    return completions


# ---------------------------------------------------------------- scoring (judge job)

def cache_file(cache_root: Path, annotator: str, conf_path: Path, judge_cfg: Optional[JudgeClientConfig],
               eval_job: str) -> Path:
    """The package's annotation cache for one eval job: keyed by annotator config bytes and endpoint
    (without a judge block the digest is that of the empty dict it once read: all None)."""
    j = judge_cfg if judge_cfg is None else expect(judge_cfg, JudgeClientConfig, "alpaca_eval_run.cache_file")
    what = {"annotator": annotator, "config_sha": hashlib.sha256(conf_path.read_bytes()).hexdigest(),
            "type": j.type if j else None, "endpoint": (j.base_url or j.source) if j else None,
            "revision": j.revision if j else None}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_root) / "alpaca_eval" / f"{annotator}-{key}" / f"{eval_job}.json"


def _check_cache(path: Path) -> str | None:
    """A cache file cut short by a kill is set aside (the package would fail on it); say so."""
    if not path.exists():
        return None
    try:
        json.loads(path.read_text(encoding="utf-8"))
        return None
    except json.JSONDecodeError:
        bad = path.with_suffix(f".corrupt-{int(time.time())}")
        path.rename(bad)
        return f"unreadable cache {path.name} moved to {bad.name}"


@contextmanager
def _lc_files(paths: dict[str, Path]):
    """The LC metric's two hub files, handed to the package instead of its download."""
    from alpaca_eval.metrics import glm_winrate

    def fetch(repo_id: str, filename: str, **_: Any) -> str:
        if filename not in paths:
            raise JobFailure(f"alpaca_eval asked for {repo_id}/{filename}, which alignkit does not provide")
        return str(paths[filename])

    original = glm_winrate.hf_hub_download
    glm_winrate.hf_hub_download = fetch
    try:
        yield
    finally:
        glm_winrate.hf_hub_download = original


def lc_paths(cfg: Any, where: str) -> dict[str, Path]:
    """df_gamed.csv and instruction_difficulty.csv from `lc_source` or `source` (a folder or the hub dataset)."""
    src = cfg.lc_source or cfg.source
    if src and Path(src).is_file():
        src = str(Path(src).parent)
    out = {}
    for f in LC_FILES:
        try:
            out[f] = resolve(src, f, where, cfg.revision)
        except JobFailure as exc:
            raise JobFailure(f"{exc} (needed for the length-controlled win rate; set length_controlled: false "
                             f"to report the win rate only)") from None
    return out


def score(rows: list[dict], refs: list[dict], cfg: Any, judge_cfg: Optional[JudgeClientConfig], judge: Any,
          cache_root: Path, eval_job: str, where: str) -> tuple[dict, list[dict]]:
    """Win rate (and LC win rate) of `rows` against `refs` by the alpaca_eval package; (entry, annotations)."""
    ae = package()
    import pandas as pd

    name = annotator(cfg)
    conf_path, single_name, conf = annotator_config(name, where)
    model_name = (conf.get("completions_kwargs") or {}).get("model_name")
    position = {r["instruction"]: i for i, r in enumerate(refs)}
    for i, row in enumerate(rows):
        if row.get("instruction") not in position:
            raise JobFailure(f"{where}: generation row {i} has an instruction not in the reference outputs")
    ours = {r["instruction"] for r in rows}
    ref_rows = [r for r in refs if r["instruction"] in ours]  # the reference order, as the package merges
    lc = bool(cfg.length_controlled)
    lc_files = lc_paths(cfg, where) if lc else None  # fail before any request when LC cannot be computed

    cache = cache_file(cache_root, name, conf_path, judge_cfg, eval_job)
    cache.parent.mkdir(parents=True, exist_ok=True)
    note = _check_cache(cache)
    requests = {"n": 0}
    kwargs: dict = {}
    kind = judge_cfg.type if judge_cfg is not None else None
    if kind == "openai":
        kwargs = _openai_kwargs(judge_cfg, model_name, where)

    def make_annotator(**kw: Any) -> Any:
        ann = ae.annotators.PairwiseAnnotator(**kw)
        for single in ann.annotators.values():
            inner = local_completions(judge, single) if kind == "hf" else single.fn_completions

            def counted(prompts: list[str], _inner: Callable = inner, **k: Any) -> dict:
                requests["n"] += len(prompts)
                return _inner(prompts=prompts, **k)

            single.fn_completions = counted
        return ann

    def winrate(annotations: Any, **kw: Any) -> dict:
        """The package's get_winrate, after making sure there is something to rate: with no preference
        at all it would fail on a None (0.6.6) or report a number of nothing."""
        prefs = pd.DataFrame(annotations).get("preference")
        if prefs is None or not prefs.notna().any():
            raise JobFailure(f"{where}: none of the {len(rows)} annotations has a preference (every request "
                             f"failed or every reply was unparseable by {name}'s parser); no score is written")
        return ae.metrics.get_winrate(annotations, **kw)

    df, annotations = ae.main.evaluate(
        model_outputs=pd.DataFrame(rows), reference_outputs=pd.DataFrame(ref_rows),
        annotators_config=str(conf_path), name=rows[0].get("generator") if rows else None,
        output_path=None, precomputed_leaderboard=None, is_return_instead_of_print=True,
        fn_metric=winrate, sort_by="win_rate", is_cache_leaderboard=False,
        annotation_kwargs=kwargs, Annotator=make_annotator, caching_path=str(cache))
    metrics = df.iloc[0].to_dict()
    ann = pd.DataFrame(annotations)
    ann.index = [position[i] for i in ann["instruction"]]  # the LC GLM reads instruction difficulty by it
    lc_metrics: dict = {}
    if lc:
        with _lc_files(lc_files):
            lc_metrics = ae.metrics.get_length_controlled_winrate(ann, save_weights_dir=None)
    entry = {
        "metric": "win_rate", "win_rate": _num(metrics.get("win_rate")),
        "win_rate_stderr": _num(metrics.get("standard_error")),
        "length_controlled_winrate": _num(lc_metrics.get("length_controlled_winrate")),
        "length_controlled_winrate_stderr": _num(lc_metrics.get("lc_standard_error")),
        "discrete_win_rate": _num(metrics.get("discrete_win_rate")),
        "n": int(ann["preference"].notna().sum()), "n_total": _int(metrics.get("n_total")),
        "n_wins": _int(metrics.get("n_wins")), "n_wins_base": _int(metrics.get("n_wins_base")),
        "n_draws": _int(metrics.get("n_draws")), "avg_length": _int(metrics.get("avg_length")),
        "unparseable": int(ann["preference"].isna().sum()),
        "annotator": name, "annotator_model": model_name, "judge": judge.name if judge else f"openai:{judge_cfg.base_url if judge_cfg else None}",
        "reference": reference_record(cfg, refs), "length_controlled": lc,
        "alpaca_eval_version": version(), "requests_made": requests["n"], "cache": str(cache),
        "higher_is_better": True}
    if note:
        entry["cache_note"] = note
    keep = [c for c in ("instruction", "generator_1", "generator_2", "preference", "raw_completion",
                        "glm_preference") if c in ann.columns]
    return entry, json.loads(ann[keep].to_json(orient="records"))


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _int(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)
