"""The jobs after training: eval and judge jobs at each run's checkpoints, merges of trained
runs and their evals, the base models' and the targets' evals.
"""

from __future__ import annotations

import itertools
from typing import Any

from alignkit.plugins.benchmarks import resolve_config
from alignkit.contract.checkpoints import (FINAL, fraction_problem, fraction_step, is_final, planned_max_steps,
                                          unsaved_reason)
from alignkit.contract.common import ModelConfig
from alignkit.contract.eval import EvalConfig, GenerationConfig, Target
from alignkit.contract.judge import JudgeConfig, JudgeTarget
from alignkit.contract.merge import MergeConfig, MergeSection
from alignkit.contract.schema import join, plain
from alignkit.contract.sections import ModelSpec, TrainingSpec
from alignkit.spec.model import AXES, BenchmarkSpec, MergeSpec, TargetSpec
from alignkit.plan.model import Job
from alignkit.plan.grid import hkey, matches, norm_pref, own_value
from alignkit.plan.runs import local_path, spec_fields


class StageJobs:
    """The compiler's eval, judge and merge jobs (of trained runs, merges, base models and targets)."""

    def checkpoints(self, values: tuple | None = None, t: TrainingSpec | None = None,
                    run: str | None = None) -> list[Any]:
        """Steps in order, then "final" (max_steps counts as final): evals.checkpoints by default."""
        values = self.spec.evals.checkpoints if values is None else values
        t = t or self.spec.training
        last = planned_max_steps(t)  # unbounded with num_train_epochs: the job counts the steps
        if any(isinstance(c, float) for c in values):
            values = self._fraction_steps(values, t, run)
        steps = sorted({c for c in values if not is_final(c, last)})
        has_final = any(is_final(c, last) for c in values)
        for c in steps:  # a dotted training axis can move max_steps/save_steps under a run
            if not isinstance(c, float) and unsaved_reason(c, last, t.save_steps):
                self._once(("ckpt", c, t.max_steps, t.save_steps), "evals.checkpoints",
                           f"step {c} is not saved by run '{run}' (training.max_steps {t.max_steps}, save_steps "
                           f"{t.save_steps}); give steps every run saves, or only 'final'")
        return steps + ([FINAL] if has_final else [])

    def _fraction_steps(self, values: tuple, t: TrainingSpec, run: str | None) -> list[Any]:
        """Fractions of training as the run's steps (a dotted training axis can move its max_steps);
        with num_train_epochs kept as fractions: the train job saves their steps (save_fractions)."""
        out = []
        for c in values:
            step = fraction_step(c, planned_max_steps(t))
            if step is None and isinstance(c, float) and not fraction_problem(c, t):
                out.append(c)
            elif step is None:
                self._once(("fraction", c, t.max_steps, t.num_train_epochs), "evals.checkpoints",
                           f"run '{run}': {fraction_problem(c, t) or f'{c!r} names no step'}")
            else:
                out.append(step)
        return out

    def benchmark_config(self, b: BenchmarkSpec, model: ModelConfig, with_judge: bool, at: tuple[Any, ...]) -> Any:
        """The benchmark's typed config on this model at these checkpoints (its type's plug-in
        resolves it: alignkit/plugins/benchmarks/)."""
        return self._cached(("benchmark", id(b), model.lm_eval_chat_template, with_judge, tuple(map(str, at))),
                            lambda: resolve_config("", b, model, with_judge, spec=self.spec, checkpoints=at))

    def _benchmarks(self, benchmarks: dict[str, BenchmarkSpec], model: ModelConfig, with_judge: bool,
                    at: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        """{name: benchmark_config}, one dict shared by every job with the same benchmarks, model
        and checkpoints (their ids encode it once)."""
        # keyed as benchmark_config is (the model enters through lm_eval_chat_template only); `at`
        # and `benchmarks` come from the cache (_benchmarks_at), so their ids stay theirs
        return self._cached(("benchmarks", model.lm_eval_chat_template, with_judge, id(at),
                             id(benchmarks)),
                            lambda: {n: self.benchmark_config(b, model, with_judge, at[n]) for n, b in benchmarks.items()})

    def eval_jobs(self, target: Job, kind: str, checkpoints: list[Any]) -> list[Job]:
        return self._eval_and_judge(target.name, target.config.axes, target.config.model,
                                    Target(kind=kind, job=target.id), checkpoints, (target.id,))

    def base_eval_jobs(self, model_name: str) -> list[Job]:
        """The untrained base model, evaluated like a run (the paper's "Original" rows)."""
        axes = {"model": model_name, "dataset": None, "preference": "original", "method": None, "peft": None,
                "seed": None}
        return self._eval_and_judge(f"{model_name}/original", axes, self.model_config(model_name),
                                    Target(kind="base"), ["final"], ())

    def target_jobs(self, name: str, t: TargetSpec) -> list[Job]:
        """An adapter or model that exists already: eval (+judge) jobs at its one checkpoint, no
        training dependency. An adapter loads on its base model's config; a full model is a base
        model of its own (the base's template and dtype when `base` is given)."""
        axes: dict[str, Any] = {a: None for a in AXES}
        axes.update({a: t.axes[a] for a in self.axes if a in t.axes})
        axes["model"] = t.base if t.base is not None else name
        axes["target"] = name
        source = local_path(self.spec, t.source)
        if t.type == "adapter":
            model = self.model_config(t.base)
            target = Target(kind="external", name=name, source=source, revision=t.revision)
        else:
            m = self.spec.models[t.base] if t.base is not None else ModelSpec(source=t.source)
            model = ModelConfig(**{**spec_fields(m), "source": source, "revision": t.revision or ModelSpec.revision},
                                name=axes["model"])
            target = Target(kind="base")
        jobs = self._eval_and_judge(f"target:{name}", axes, model, target, ["final"], ())
        if not jobs:
            self.problems.add(join("targets", name), "no benchmark runs at 'final', so this target has nothing to "
                                                     "evaluate (add evals.benchmarks)")
        return jobs

    def selected_eval_jobs(self, target: Job, checkpoints: list[Any]) -> list[Job]:
        """The eval (+judge) job of the benchmarks with `runs: selected` on a trained run: compiled
        with every run, submitted only for the runs the selection picks (alignkit/plan/selected.py).
        Their config is what any eval of those benchmarks would be; the name says why it is apart."""
        return self._eval_and_judge(target.name, target.config.axes, target.config.model,
                                    Target(kind="adapter", job=target.id), checkpoints, (target.id,), selected=True)

    def _benchmarks_at(self, checkpoints: list[Any], selected: bool = False) -> tuple[
            dict[str, tuple[Any, ...]], dict[str, BenchmarkSpec], dict[str, BenchmarkSpec], tuple[Any, ...]]:
        """Each benchmark's checkpoints among these, the benchmarks with any, the judged ones among
        them, the checkpoints loaded; only the benchmarks with `runs: selected` if `selected`, else
        only the others."""
        at: dict[str, tuple[Any, ...]] = {}
        for n, b in self.spec.evals.benchmarks.items():
            if (b.runs == "selected") != selected:
                continue
            wanted = set(self.checkpoints(b.checkpoints) if b.checkpoints is not None else checkpoints)
            if here := tuple(c for c in checkpoints if c in wanted):
                at[n] = here
        benchmarks = {n: b for n, b in self.spec.evals.benchmarks.items() if n in at}
        judged = {n: b for n, b in benchmarks.items() if b.judge}
        loaded = tuple(c for c in checkpoints if any(c in v for v in at.values()))
        self.ids.share(loaded)
        return at, benchmarks, judged, loaded

    def _eval_and_judge(self, name: str, axes: dict[str, Any], model: ModelConfig, target: Target,
                        checkpoints: list[Any], deps: tuple[str, ...], selected: bool = False) -> list[Job]:
        """One eval job over the target's checkpoints, each benchmark at its own ones (a benchmark's
        `checkpoints` in its config), and one judge job for the judged benchmarks' generations."""
        at, benchmarks, judged, loaded = self._cached(("at", tuple(checkpoints), selected),
                                                      lambda: self._benchmarks_at(checkpoints, selected))
        if not at:
            return []
        suffix = "-selected" if selected else ""
        cfg = EvalConfig(stage="eval", axes=axes, model=model, target=target, checkpoints=loaded,
                         benchmarks=self._benchmarks(benchmarks, model, False, at), generation=self._generation())
        ev = self._job(f"{name}/eval{suffix}", "eval", deps, cfg)
        jobs = [ev]
        if judged:
            jcfg = JudgeConfig(stage="judge", axes=axes, target=JudgeTarget(job=ev.id),
                               benchmarks=self._benchmarks(judged, model, True, at))
            jobs.append(self._job(f"{name}/judge{suffix}", "judge", (ev.id,), jcfg))
        return jobs

    def _generation(self) -> GenerationConfig | None:
        """evals.generation (None when unset: not in config.json, so other studies' ids do not move)."""
        g = self.spec.evals.generation
        return None if g is None else self._cached(("generation",), lambda: GenerationConfig(**spec_fields(g)))

    def merge_jobs(self, index: int, m: MergeSpec, trains: list[Job]) -> list[Job]:
        combine_axes = [a for a in AXES if a in m.combine]
        combine_vals = {a: [norm_pref(v) if a == "preference" else v for v in m.combine[a]] for a in combine_axes}
        groups: dict[tuple, tuple[dict[str, Any], dict[tuple, Job]]] = {}
        kept = [a for a in self.axes if a not in m.combine]  # every other axis, dotted ones too, is shared by a merge's inputs
        for t in trains:
            axes = t.config.axes
            if not matches(axes, m.where) or any(own_value(a, axes[a]) not in combine_vals[a] for a in combine_axes):
                continue
            gkey = tuple([(a, hkey(axes[a])) for a in kept if a in axes])
            group = groups.get(gkey)
            if group is None:
                group = groups[gkey] = ({a: axes[a] for a in kept if a in axes}, {})
            group[1][tuple([own_value(a, axes[a]) for a in combine_axes])] = t
        jobs = []
        combos = list(itertools.product(*(combine_vals[a] for a in combine_axes)))
        for shared, members in groups.values():
            if not all(c in members for c in combos):
                continue  # some input of this group is not trained in this study
            inputs = [members[c] for c in combos]
            first = inputs[0].config.init
            if any(t.config.init != first for t in inputs) and any(t.config.init is not None and t.config.init.mode == "merge"
                                                                  for t in inputs):
                self._once(("chain-merge", m.name), join("merges", index),
                           f"merge '{m.name}' combines runs on different bases (a chained init_mode: merge run "
                           f"trains on its own merged upstream): combine runs of init_mode continue or plain runs")
                continue
            # the shared named axes, then the combined ones (as before issue 13: configs stay byte-for-byte),
            # then the dotted ones
            axes = {a: shared[a] for a in AXES if a in shared}
            for a in combine_axes:
                axes[a] = "{" + ",".join(map(str, combine_vals[a])) + "}"
            axes.update((a, shared[a]) for a in self.dotted if a in shared)
            axes["merge"] = m.name
            cfg = MergeConfig(stage="merge", axes=axes, model=inputs[0].config.model,
                              merge=self._cached(("merge", index), lambda: MergeSection(
                                  name=m.name, method=m.method, parameters=plain(m.parameters))),
                              inputs=tuple(t.id for t in inputs), input_axes=tuple(t.config.axes for t in inputs))
            name = f"{m.name}:" + self.run_name(axes)
            merged = self._job(name, "merge", tuple(t.id for t in inputs), cfg)
            jobs.append(merged)
            if m.evaluate:
                jobs += self.eval_jobs(merged, "merged", ["final"])
        if not jobs:
            self.problems.add(join("merges", index), f"merge '{m.name}' finds no trained runs to combine "
                                                     f"(every input must be in the grid)")
        return jobs
