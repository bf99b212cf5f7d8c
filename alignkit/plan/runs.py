"""A training run's resolved sections: its model, dataset, method, PEFT and training entries
with its dotted axes in place, and the train job's config built from them.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from alignkit.contract.schema import join, plain
from alignkit.plugins.methods import resolve_config as method_config
from alignkit.contract.sections import DatasetSpec, ModelSpec, TrainingSpec
from alignkit.spec.axes import provided_preferences, section_entry
from alignkit.spec.model import Spec
from alignkit.spec.override import check_run, override_section
from alignkit.spec.paths import resolve_source
from alignkit.plan.grid import close_path, get_path, has_path, value_key


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
            resolved = self.section_config(section, entry, out[section], out)
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

    def section_config(self, section: str, entry: str | None, obj: Any, sections: dict[str, Any]) -> dict[str, Any]:
        if section == "model":
            return self.model_config(entry, obj)
        if section == "dataset":
            return self.dataset_config(entry, obj)
        if section == "method":
            return self.method_config(entry, obj)
        if section == "peft":
            return self._cached(("peft", entry, id(obj)), lambda: {"name": entry, **plain(obj)})
        return self.training_config(obj, sections["dataset"].validation is not None)

    # ---- configs ------------------------------------------------------------------------------
    def model_config(self, name: str, m: ModelSpec | None = None) -> dict[str, Any]:
        m = m or self.spec.models[name]
        return self._cached(("model", name, id(m)), lambda: {**plain(m), "name": name,
                                                             "source": local_path(self.spec, m.source)})

    def dataset_config(self, name: str, ds: DatasetSpec) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            cfg = {"name": name, **plain(ds), "source": local_path(self.spec, ds.source)}
            for key in ("files", "validation"):  # written only when used: old studies' ids stay
                if cfg[key] is None:
                    del cfg[key]
            if "files" in cfg:
                cfg["files"] = {k: local_path(self.spec, v) for k, v in cfg["files"].items()}
            if "validation" in cfg:
                cfg["validation"] = {k: v for k, v in cfg["validation"].items() if v is not None}
                if "split" in cfg["validation"]:
                    cfg["validation"].pop("seed")  # a named split is not drawn: no seed
            return cfg
        return self._cached(("dataset", name, id(ds)), make)

    def method_config(self, name: str, method: Any) -> dict[str, Any]:
        return self._cached(("method", name, id(method)), lambda: self._method_config(name, method))

    def training_config(self, t: TrainingSpec, validation: bool) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            cfg = plain(t)
            if validation:  # null: validate where checkpoints are saved
                cfg["eval_steps"] = t.eval_steps or t.save_steps
            else:
                del cfg["eval_steps"]  # absent without validation: old studies' ids stay
            if t.num_train_epochs is None:
                del cfg["num_train_epochs"]  # absent unless set: old studies' ids stay
            else:
                del cfg["max_steps"]  # the job counts them from the rows it keeps (steps_for_epochs)
            return cfg
        return self._cached(("training", id(t), validation), make)

    def train_config(self, p: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
        return {
            "stage": "train",
            "axes": dict(p),
            "model": self.model_config(p["model"], s["model"]),
            "dataset": self.dataset_config(p["dataset"], s["dataset"]),
            "preference": self._cached(("preference", p["preference"]), lambda: p["preference"].split("+")),
            "method": self.method_config(p["method"], s["method"]),
            "peft": self.section_config("peft", p["peft"], s["peft"], s),
            "training": self.training_config(s["training"], s["dataset"].validation is not None),
            "seed": p["seed"],
            **self.save_fractions(s["training"]),
        }

    def save_fractions(self, t: TrainingSpec) -> dict[str, Any]:
        """With num_train_epochs, the fractions of training evals ask for: the train job saves an
        adapter at each one's step (contract/checkpoints.py epoch_fraction_step). Absent otherwise:
        old studies' ids stay."""
        if t.num_train_epochs is None:
            return {}
        asked = [*self.spec.evals.checkpoints, *(c for b in self.spec.evals.benchmarks.values()
                                                 for c in (b.checkpoints or ()))]
        fractions = sorted({c for c in asked if isinstance(c, float) and 0 < c < 1})
        return {"save_fractions": fractions} if fractions else {}

    def _method_config(self, name: str, method: Any) -> dict[str, Any]:
        return method_config(name, method)  # the method's own resolve (alignkit/plugins/methods/)

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
