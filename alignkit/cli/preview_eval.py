"""`alignkit preview SPEC --job EVAL_JOB [--benchmark B] [--n N] [--json]`: the first N prompts each
generating benchmark of one eval job sends to the model, decoded from the exact token ids the
generator receives (jobs.eval.generate.prompt_ids, run in a child process: jobs/preview.py), with each prompt's token count and new-token budget
(min(max_new_tokens, context - prompt tokens), the rule jobs/eval/generate.py applies).

The prompts come from the benchmark type's own `prompts` hook (alignkit/plugins/benchmarks/<type>.py), the
code the eval job generates with; the tokenizer is loaded as the eval job loads it (the model's
template applied) and the context read from the model's config.json (a local folder or the HF
cache; unknown: no cap). No model weights are read, so it runs on a login node. lm_eval benchmarks
are not shown: lm-eval builds their prompts itself (its `--log_samples` shows them).
JSON: {"job", "benchmarks": {B: [{"prompt", "prompt_tokens", "max_new_tokens"}]}}.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from alignkit.contract.errors import UserError


def _generating(config: Any, only: str | None) -> dict[str, Any]:
    from alignkit.plugins import benchmarks as benchmarks_reg

    benches = {n: b for n, b in config.benchmarks.items() if benchmarks_reg.get(b.type).generates}
    if only is not None:
        if only not in config.benchmarks:
            raise UserError(f"--benchmark: the eval job has no benchmark '{only}' "
                            f"(it has: {', '.join(config.benchmarks) or 'none'})")
        if only not in benches:
            raise UserError(f"--benchmark: {only} is an {config.benchmarks[only].type} benchmark, whose prompts "
                            f"lm-eval builds itself; preview shows the generating benchmarks "
                            f"({', '.join(benches) or 'none in this job'})")
        benches = {only: benches[only]}
    return benches


def preview(config: Any, n: int, benchmark: str | None = None) -> dict:
    """{B: [{"prompt", "prompt_tokens", "max_new_tokens"}]} for one eval config (typed or as config.json
    holds it): the benchmarks are chosen here, the prompts built in a child process (jobs/preview.py)."""
    from alignkit.plan.context_check import model_context
    from alignkit.contract import ContractError, entry, to_dict
    from alignkit.contract.eval import load_eval

    try:
        typed = load_eval(config) if isinstance(config, dict) else config
    except ContractError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    benches = _generating(typed, benchmark)
    if not benches:
        return {}
    context, _ = model_context(str(typed.model.source), typed.model.revision)
    return entry.run_preview({"stage": "eval", "config": config if isinstance(config, dict) else to_dict(typed),
                              "n": n, "benchmarks": list(benches), "context": context})


def run(args: argparse.Namespace, job: Any) -> int:
    out = {"job": job.id, "benchmarks": preview(job.config, args.n, getattr(args, "benchmark", None))}
    if args.json:
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        return 0
    lines = [f"job {job.id} {job.name} (eval): the first {args.n} prompts of each generating benchmark"]
    for name, shown in out["benchmarks"].items():
        for i, ex in enumerate(shown, 1):
            lines.append(f"--- {name} prompt {i}: {ex['prompt_tokens']} tokens, up to {ex['max_new_tokens']} new")
            lines.append(repr(ex["prompt"]))  # repr keeps spaces and newlines visible: the model sees them
    if not out["benchmarks"]:
        lines.append("(no generating benchmark in this job: lm-eval builds its prompts itself)")
    print("\n".join(lines))
    return 0
