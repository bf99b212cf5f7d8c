"""Config types more than one stage's contract uses."""

from __future__ import annotations

from dataclasses import field, make_dataclass
from typing import Optional

from alignkit.contract.sections import JudgeSpec, ModelSpec


def named(base: type, cls_name: Optional[str] = None) -> type:
    """`base` (a spec dataclass: its fields and defaults, the one place they live) plus a required
    keyword-only `name`, as the compiler writes a section into a job's config. The class is called
    `cls_name`, by default base's name with Config for Spec."""
    return make_dataclass(cls_name or base.__name__.removesuffix("Spec") + "Config",
                          [("name", str, field(kw_only=True))], bases=(base,), frozen=True)


# config["model"] of train, eval and merge jobs: the spec's model with its name and an absolute source
ModelConfig = named(ModelSpec)
# A judged benchmark's "judge" in eval and judge job configs (BenchmarkConfig.judge; judge jobs only):
# the spec's evals.judges entry with its name and an absolute `source`. Written whole, null fields
# included (no __unwritten__), as the dict it replaced was; jobs/judge/judges.py builds the client.
JudgeClientConfig = named(JudgeSpec, "JudgeClientConfig")

# What a judge client asks for that no config carries (JudgeSpec has no such field): an openai judge's
# reply length (`max_tokens`) and an hf judge's (`max_new_tokens`). jobs/judge/judges.py sends them
# (both are in its reply-cache key) and alignkit/plan/judge_cost.py counts them.
OPENAI_REPLY_TOKENS = 512
HF_REPLY_TOKENS = 256
