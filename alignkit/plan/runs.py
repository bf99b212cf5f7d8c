"""A training run's resolved sections: its model, dataset, method, PEFT and training entries
with its dotted axes in place, and the train job's typed config (alignkit/contract/train.py)
built from them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from alignkit.contract.common import ModelConfig
from alignkit.contract.schema import join, plain
from alignkit.contract.serial import to_json
from alignkit.contract.train import DatasetConfig, PeftConfig, TrainConfig
from alignkit.plugins.methods import resolve_config as method_config
from alignkit.contract.sections import DatasetSpec, ModelSpec, TrainingSpec
from alignkit.spec.axes import provided_preferences, section_entry
from alignkit.spec.model import Spec
from alignkit.spec.override import check_run, override_section
from alignkit.spec.paths import resolve_source
from alignkit.plan.grid import close_path, get_path, has_path, value_key


def spec_fields(obj: Any) -> dict[str, Any]:
    """A spec section's field values (its config class adds `name` to them)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def local_path(spec: Spec, source: str) -> str:
    """Local paths become absolute (relative ones are relative to the spec file); hub ids stay."""
    return resolve_source(spec.path.parent, source)


class RunSections:
    """The compiler's per-run sections: a run's section entries with its dotted axes in place, and the
    resolved sub-configs of a train job (each built once, shared read-only between jobs)."""

    # ---- a run's sections, dotted axes in place ----------------------------------------------------
    def sections(self, p: dict[str, Any], name: str) -> dict[str, Any] | None:
        """The run's section entries ({section: spec object}) with its dotted axes in place; the
        dotted values in `p` become the converted ones. None after a problem."""
        spec = self.spec
        entries = {"model": p["model"], "dataset": p["dataset"], "method": p["method"], "peft": p["peft"],
                   "training": None}
        out = {s: section_entry(spec, s, e) for s, e in entries.items()}
        wanted: dict[str, dict[str, Any]] = {}
        ok = True
        for axis in self.dotted:
            if axis not in p:
                continue
            section, _, rest = axis.partition(".")
            entry = entries[section]
            at = self.origin.get(axis, "grid")
            resolved = self.section_json(section, entry, out[section], out)
            if not has_path(resolved, rest) and not has_path(self.section_fields(section, entry, out[section]), rest):
                what = f"{section} '{entry}'" if entry else section
                close = close_path({**self.section_fields(section, entry, out[section]), **resolved}, rest)
                way_out = (f"did you mean '{section}.{close}'?" if close else
                           f"sweep it only where it applies: an include block per {section}, e.g. include: "
                           f"[{{{section}: <name>, {axis}: [...]}}]")
                self._once(("missing", axis, entry), at,
                           f"axis '{axis}' does not exist for run '{name}' ({what} has no '{rest}' in its resolved "
                           f"config); {way_out}")
                ok = False
                continue
            value = p[axis]
            vk = value_key(value)
            one, problems = self._cached(("override", section, entry, rest, vk),
                                         functools.partial(override_section, spec, section, entry, {rest: value}))
            for message in problems:
                self._once(("bad", axis, entry, vk), self.origin.get((axis, vk), at),
                           f"{axis}={value!r} ({section} '{entry}'): {message}" if entry else f"{axis}={value!r}: {message}")
            ok = ok and not problems
            wanted.setdefault(section, {})[rest] = value
        if not ok:
            return None
        for section, values in wanted.items():
            key = json.dumps(values, sort_keys=True, default=str)
            new, problems = self._cached(("override", section, entries[section], key),
                                         functools.partial(override_section, spec, section, entries[section], values))
            for message in problems:
                self._once(("run", name, message), "grid", f"run '{name}': {message}")
            if problems:
                return None
            out[section] = new
            data = plain(new)
            for rest in values:  # the label holds the value as the spec would (5e-6 read as a number)
                p[f"{section}.{rest}"] = get_path(data, rest)
        if wanted and not self._run_rules(out, entries, wanted, p, name):
            return None
        return out

    def _run_rules(self, out: dict[str, Any], entries: dict[str, Any], wanted: dict[str, dict[str, Any]],
                   p: dict[str, Any], name: str) -> bool:
        """The method's spec-wide rules on this run, its dotted values in place (spec.check_run)."""
        names = {s: e for s, e in entries.items() if e is not None}
        key = json.dumps([names, wanted], sort_keys=True, default=str)
        problems = self._cached(("run-rules", key), lambda: check_run(self.spec, out, names))
        at = next((self.origin.get(a, "grid") for a in self.dotted if a in p), "grid")
        for message in problems:
            self._once(("run-rule", message), at, f"run '{name}': {message} (set by a dotted axis)")
        return not problems

    def section_fields(self, section: str, entry: str | None, obj: Any) -> dict[str, Any]:
        """A method's or the training section's every field, defaults included: an axis may sweep a
        field its resolved config leaves out at the default (DPO writes loss_type only when not
        sigmoid; training, num_train_epochs only when set), except training.eval_steps, which exists
        only with validation rows. Other sections: their resolved config."""
        if section not in ("method", "training"):
            return {}
        return self._cached(("fields", section, entry, id(obj)),
                            lambda: {k: v for k, v in plain(obj).items() if (section, k) != ("training", "eval_steps")})

    def section_config(self, section: str, entry: str | None, obj: Any, sections: dict[str, Any]) -> Any:
        """A section of the train job's typed config, made once per (entry, spec object)."""
        if section == "model":
            return self.model_config(entry, obj)
        if section == "dataset":
            return self.dataset_config(entry, obj)
        if section == "method":
            return self.method_config(entry, obj)
        if section == "peft":
            return self._cached(("peft", entry, id(obj)), lambda: PeftConfig(quantization=obj.quantization, name=entry))
        return self.training_config(obj, sections["dataset"].validation is not None)

    def section_json(self, section: str, entry: str | None, obj: Any, sections: dict[str, Any]) -> dict[str, Any]:
        """That section as config.json holds it (what a dotted axis must name)."""
        typed = self.section_config(section, entry, obj, sections)
        return self._cached(("json", id(typed)), lambda: to_json(typed))

    # ---- configs ------------------------------------------------------------------------------
    def model_config(self, name: str, m: ModelSpec | None = None) -> ModelConfig:
        m = m or self.spec.models[name]
        return self._cached(("model", name, id(m)), lambda: ModelConfig(
            **{**spec_fields(m), "source": local_path(self.spec, m.source)}, name=name))

    def dataset_config(self, name: str, ds: DatasetSpec) -> DatasetConfig:
        def make() -> DatasetConfig:
            values = {**spec_fields(ds), "source": local_path(self.spec, ds.source)}
            if ds.files is not None:
                values["files"] = {k: local_path(self.spec, v) for k, v in ds.files.items()}
            if ds.validation is not None and ds.validation.split is not None:  # a named split is not drawn: no seed
                values["validation"] = dataclasses.replace(ds.validation, seed=type(ds.validation)().seed)
            return DatasetConfig(**values, name=name)
        return self._cached(("dataset", name, id(ds)), make)

    def method_config(self, name: str, method: Any) -> Any:
        return self._cached(("method", name, id(method)), lambda: method_config(name, method))

    def training_config(self, t: TrainingSpec, validation: bool) -> TrainingSpec:
        """The run's training section: eval_steps resolved with validation (null: where checkpoints are
        saved) and cleared without; with num_train_epochs max_steps is not the run's (the job counts the
        steps from the rows it keeps), so it is left at its default and out of config.json."""
        def make() -> TrainingSpec:
            changes: dict[str, Any] = {"eval_steps": (t.eval_steps or t.save_steps) if validation else None}
            if t.num_train_epochs is not None:
                changes["max_steps"] = TrainingSpec.max_steps
            return dataclasses.replace(t, **changes)
        return self._cached(("training", id(t), validation), make)

    def train_config(self, p: dict[str, Any], s: dict[str, Any]) -> TrainConfig:
        return TrainConfig(
            stage="train",
            axes=dict(p),
            model=self.model_config(p["model"], s["model"]),
            dataset=self.dataset_config(p["dataset"], s["dataset"]),
            preference=self._cached(("preference", p["preference"]), lambda: tuple(p["preference"].split("+"))),
            method=self.method_config(p["method"], s["method"]),
            peft=self.section_config("peft", p["peft"], s["peft"], s),
            training=self.training_config(s["training"], s["dataset"].validation is not None),
            seed=p["seed"],
            save_fractions=self.save_fractions(s["training"]),
        )

    def save_fractions(self, t: TrainingSpec) -> tuple[float, ...] | None:
        """With num_train_epochs, the fractions of training evals ask for: the train job saves an
        adapter at each one's step (contract/checkpoints.py epoch_fraction_step). None otherwise (not
        in config.json: old studies' ids stay)."""
        if t.num_train_epochs is None:
            return None
        asked = [*self.spec.evals.checkpoints, *(c for b in self.spec.evals.benchmarks.values()
                                                 for c in (b.checkpoints or ()))]
        fractions = tuple(sorted({c for c in asked if isinstance(c, float) and 0 < c < 1}))
        return self._cached(("fractions", fractions), lambda: fractions) if fractions else None

    def check_preferences(self, p: dict[str, Any], ds: DatasetSpec) -> bool:
        """A run's preference must be one its dataset provides (subsets, files or its format)."""
        provided = provided_preferences(ds)
        if provided is None:
            return True
        ok = True
        dp = join("datasets", p["dataset"])
        for part in p["preference"].split("+"):
            if part in provided:
                continue
            ok = False
            if ds.subsets is not None or ds.files is not None:
                key = "subsets" if ds.subsets is not None else "files"
                self._once(("pref", p["dataset"], part), join(dp, key),
                           f"no {'subset' if key == 'subsets' else 'file'} for preference '{part}', which the grid "
                           f"trains on with dataset '{p['dataset']}' (it has: {', '.join(sorted(provided)) or 'none'}; "
                           f"or exclude: [{{dataset: {p['dataset']}, preference: {part}}}])")
            else:
                self._once(("pref", p["dataset"], part), "grid.preference",
                           f"dataset '{p['dataset']}' ({ds.format}) provides {', '.join(provided)}, not '{part}' "
                           f"(exclude: [{{dataset: {p['dataset']}, preference: {part}}}] skips those runs)")
        return ok
