"""Mean ± std over seeds, and the paper's table layouts with its published numbers beside ours.

All tables are built from the tidy rows (tidy.py) in plain Python: no pandas needed, so a
summary of a 320-run study takes milliseconds. Std is the sample std (n-1) over seeds; a cell
with one seed shows no std. A cell that exists in the paper but not (yet) in our results is "—".
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from alignkit.collect import paper_numbers as paper
from alignkit.contract.textsafe import md_cell

MISSING = "—"
GROUP_KEYS = ("model", "paper_model", "dataset", "preference", "method", "peft", "merge", "merge_method",
              "checkpoint", "step", "benchmark", "metric")
BENCH_ORDER = ("bbh", "mmlu", "alpaca_eval", "realtoxicity", "red_instruct")
METHOD_ORDER = ("sft", "dpo")


@dataclass
class Stat:
    values: list[float] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)
    missing: int = 0   # rows of this cell with no value yet (pending/failed evals)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        if len(self.values) < 2:
            return None
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    def text(self) -> str:
        if not self.values:
            return MISSING
        s = fmt(self.mean)
        if self.std is not None:
            s += f" ± {fmt(self.std)}"
        return s + (f" (n={self.n})" if self.n != 1 or self.missing else "")


def fmt(x: float | None) -> str:
    if x is None:
        return MISSING
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


class Stats(dict):
    """Cell key → Stat; `columns` names the key's fields (GROUP_KEYS with the study's dotted axes
    after the named ones), `extra` those dotted axes."""

    def __init__(self, extra: Iterable[str] = ()):
        super().__init__()
        self.extra = tuple(extra)
        self.columns = group_keys(self.extra)

    def row(self, key: tuple) -> dict[str, Any]:
        return dict(zip(self.columns, key, strict=True))


def group_keys(extra: Iterable[str] = ()) -> tuple[str, ...]:
    n = GROUP_KEYS.index("checkpoint")
    return (*GROUP_KEYS[:n], *extra, *GROUP_KEYS[n:])


def extra_label(r: dict[str, Any], extra: Iterable[str]) -> str:
    """"method.beta=0.1, method.lora.r=8": a row's dotted-axis values (those it has)."""
    return ", ".join(f"{a}={r[a]}" for a in extra if r.get(a) is not None)


def aggregate(rows: Iterable[dict[str, Any]], extra: Iterable[str] = ()) -> Stats:
    stats = Stats(extra)
    for r in rows:
        if r["stage"] == "train":
            continue
        key = tuple(r.get(k) for k in stats.columns)
        st = stats.get(key)
        if st is None:
            st = stats[key] = Stat()
        if r.get("value") is None:
            st.missing += 1
        else:
            st.values.append(r["value"])
            st.seeds.append(r.get("seed"))
    return stats


def long_rows(stats: Stats) -> list[dict[str, Any]]:
    """summary.csv: one row per cell (every axis but seed), with mean, std and counts."""
    return [{**stats.row(k), "mean": s.mean, "std": s.std, "n_seeds": s.n, "n_missing": s.missing,
             "seeds": " ".join(str(x) for x in s.seeds if x is not None)} for k, s in stats.items()]


def primary_metrics(configured: dict[str, str], rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The metric shown for each benchmark: the one its eval config names, else the only/first one seen."""
    seen: dict[str, list[str]] = {}
    for r in rows:
        if r["stage"] != "train" and r.get("metric"):
            seen.setdefault(r["benchmark"], [])
            if r["metric"] not in seen[r["benchmark"]]:
                seen[r["benchmark"]].append(r["metric"])
    out = {b: (configured[b] if configured.get(b) in ms else sorted(ms)[0]) for b, ms in seen.items() if ms}
    out.update({b: m for b, m in configured.items() if b not in out and m})
    return out


def _natural(x: Any) -> tuple:
    """Sort key: numbers by value (a swept r of 8 before 16), everything else as text after them."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return (0, float(x), "")
    return (1, 0.0, str(x))


def _order(values: Iterable[Any], first: Iterable[Any] = ()) -> list[Any]:
    vals = set(v for v in values if v is not None)
    head = [v for v in first if v in vals]
    return head + sorted((v for v in vals if v not in head), key=str)


def norm_method(m: Any) -> str | None:
    """"{sft,dpo}" or ["sft","dpo"] (a merge of both) → "dpo+sft"; "sft" → "sft"."""
    if m is None:
        return None
    parts = m if isinstance(m, (list, tuple)) else str(m).strip("{}").replace("+", ",").split(",")
    return "+".join(sorted(p.strip() for p in parts if p.strip()))


def method_label(m: str) -> str:
    return "+".join(p.upper() for p in sorted(m.split("+"), key=lambda p: (p != "sft", p)))


@dataclass
class Cells:
    """Final-checkpoint means keyed like the paper: (model, dataset, peft, pref, method, merge_method, bench)."""
    stats: dict[tuple, Stat]
    model_names: dict[str, str]   # paper name → our name (for labels)


def final_cells(stats: Stats, primary: dict[str, str]) -> Cells:
    """A study with dotted axes keeps its configurations apart: their values join the preference
    label ("harmless [method.beta=0.1]"; a merge's method label), so the paper's numbers match
    none of them and no two configurations share a cell."""
    out: dict[tuple, Stat] = {}
    names: dict[str, str] = {}
    for k, st in stats.items():
        r = stats.row(k)
        if r["checkpoint"] != "final" or primary.get(r["benchmark"]) != r["metric"]:
            continue
        model = r["paper_model"] or paper.MODEL_NAMES.get(r["model"], r["model"])
        names.setdefault(model, r["model"])
        pref = "merged" if r["merge"] else r["preference"]
        mm = r["merge_method"]
        label = extra_label(r, stats.extra)
        if label and pref == "merged":
            mm = f"{mm} [{label}]"
        elif label:
            pref = f"{pref} [{label}]"
        key = (model, r["dataset"], r["peft"], pref, norm_method(r["method"]), mm, r["benchmark"])
        if key in out:  # two merges of one method (different names/parameters): keep both apart
            key = key[:5] + (f"{r['merge_method']}:{r['merge']}",) + key[6:]
        out[key] = st
    # an untrained base model (evals.base_models) belongs to every dataset/PEFT/method cell of its
    # model: the paper prints its "Original" row once per table, the same for SFT and DPO
    combos = {(k[1], k[2], k[4]) for k in out if k[3] != "original"}
    for k in [k for k in out if k[3] == "original" and k[1] is None]:
        for dataset, peft, method in combos:
            out.setdefault((k[0], dataset, peft, "original", method, None, k[6]), out[k])
        del out[k]   # placed in its model's cells above; on its own it would be a "None, None" table
    return Cells(out, names)


def is_paper_study(rows: Iterable[dict[str, Any]]) -> bool:
    """Whether the study has one of the paper's models trained on one of its datasets: only then
    do the paper's tables, published numbers and takeaways appear (a custom study gets none)."""
    models = set(paper.MODEL_NAMES.values())
    for r in rows:
        if r.get("target_kind") != "base" and r.get("dataset") in paper.DATASET_NAMES \
                and (r.get("paper_model") or paper.MODEL_NAMES.get(r.get("model"))) in models:
            return True
    return False


# ---------------------------------------------------------------- tables
@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    slug: str = ""

    def markdown(self) -> str:
        lines = [f"### {md_cell(self.title)}", ""]  # values from the spec and jobs: inert (alignkit/contract/textsafe.py)
        if self.note:
            lines += [md_cell(self.note), ""]
        lines.append("| " + " | ".join(md_cell(c) for c in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return (f"<h3 id='{html.escape(self.slug)}'>{html.escape(self.title)}</h3>{note}"
                f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _drop_empty_paper_columns(t: Table) -> Table:
    keep = [i for i, c in enumerate(t.columns)
            if not c.endswith("paper") or any(row[i] != MISSING for row in t.rows)]
    return Table(t.title, [t.columns[i] for i in keep], [[row[i] for i in keep] for row in t.rows], t.note, t.slug)


def overview_table(stats: Stats, primary: dict[str, str]) -> Table:
    """Every trained/merged model of the study at its final checkpoint: one row each, benchmarks across;
    a column per axis (the dotted ones the study sweeps after the named ones)."""
    rows: dict[tuple, dict[str, Stat]] = {}
    benches = set()
    axes = ["model", "dataset", "peft", "preference", "method", "merge", *stats.extra]
    for k, st in stats.items():
        r = stats.row(k)
        if r["checkpoint"] != "final" or primary.get(r["benchmark"]) != r["metric"]:
            continue
        key = tuple(r[c] for c in axes)
        rows.setdefault(key, {})[r["benchmark"]] = st
        benches.add(r["benchmark"])
    bench_list = _order(benches, BENCH_ORDER)
    cols = axes + [f"{b} ({primary[b]})" for b in bench_list]
    out = [[str(x) if x is not None else "" for x in key] + [rows[key].get(b, Stat()).text() for b in bench_list]
           for key in sorted(rows, key=lambda k: tuple(_natural(x) for x in k))]
    return Table("All runs at the final checkpoint (mean ± std over seeds)", cols, out,
                 "n = number of seeds with a result; — = no result yet.", "overview")


def sft_dpo_tables(cells: Cells, paper_study: bool = True) -> list[Table]:
    """Tables 4/5 layout for every (dataset, PEFT) of ours: rows model × preference, columns
    benchmark × {SFT, DPO}, ours beside the paper's (a paper study only)."""
    pap = paper.lookup() if paper_study else {}
    ours = {k: v for k, v in cells.stats.items() if k[5] is None and k[3] != "merged"}
    # a run with no dataset or PEFT (an external target) has no place in this layout: the overview has it
    groups = _order({(k[1], k[2]) for k in ours if k[1] is not None and k[2] is not None},
                    [("hh-rlhf", "qlora"), ("beavertails", "qlora"), ("beavertails", "lora")])
    tables = []
    for dataset, peft in groups:
        keys = [k for k in ours if k[1:3] == (dataset, peft)]
        pkeys = [k for k in pap if k[1:3] == (dataset, peft) and k[5] is None and k[3] not in ("original",)]
        benches = _order({k[6] for k in keys} | {k[6] for k in pkeys}, BENCH_ORDER)
        methods = _order({k[4] for k in keys} | {k[4] for k in pkeys}, METHOD_ORDER)
        models = _order({k[0] for k in keys} | {k[0] for k in pkeys}, list(paper.MODEL_NAMES.values()))
        prefs = _order({k[3] for k in keys} | {k[3] for k in pkeys}, ("harmless", "helpful"))
        cols = ["model", "preference"]
        for b in benches:
            for m in methods:
                cols += [f"{paper.BENCHMARK_NAMES.get(b, b)} {method_label(m)}",
                         f"{paper.BENCHMARK_NAMES.get(b, b)} {method_label(m)} paper"]
        rows = []
        for model in models:
            for pref in prefs:
                row, any_value = [model, pref], False
                for b in benches:
                    for m in methods:
                        k = (model, dataset, peft, pref, m, None, b)
                        st, pv = ours.get(k), pap.get(k)
                        any_value |= st is not None or pv is not None
                        row += [st.text() if st else MISSING, fmt(pv)]
                if any_value:
                    rows.append(row)
        title = f"SFT vs DPO — {paper.DATASET_NAMES.get(dataset, dataset)}, {_peft(peft)}"
        table = "table5" if (dataset, peft) == ("beavertails", "lora") else "table4"
        if any(k[1:3] == (dataset, peft) for k in pkeys):
            title += f" (paper {paper.TITLES[table].split(':')[0]})"
        tables.append(_drop_empty_paper_columns(Table(title, cols, rows, _NOTE if pap else _OWN_NOTE,
                                                      f"sftdpo-{dataset}-{peft}")))
    return tables


def _peft(name: Any) -> str:
    return {"lora": "LoRA", "qlora": "QLoRA"}.get(str(name), str(name))


_NOTE = ("ours = mean ± std over seeds at the final checkpoint (n = seeds); paper = the published number "
         "(Thakkar et al. 2024, no std reported); — = no result.")
_OWN_NOTE = "mean ± std over seeds at the final checkpoint (n = seeds); — = no result."


_TABLE2_PREFS = ("original", "harmless", "helpful", "harmless+helpful")


def table2(cells: Cells) -> Table:
    """Paper Table 2 frame: BeaverTails QLoRA, Mistral models, original/harmless/helpful/mixture."""
    pap = paper.lookup()
    benches = ("mmlu", "bbh", "realtoxicity")
    cols = ["model", "variant"] + [f"{method_label(m)} {paper.BENCHMARK_NAMES[b]}{s}"
                                   for m in METHOD_ORDER for b in benches for s in ("", " paper")]
    rows = []
    for model in ("Mistral-7b", "Mistral-7b-Ins"):
        for pref in _TABLE2_PREFS:
            row = [model, pref]
            for m in METHOD_ORDER:
                for b in benches:
                    k = (model, "beavertails", "qlora", pref, m, None, b)
                    st = cells.stats.get(k)
                    row += [st.text() if st else MISSING, fmt(pap.get(k))]
            rows.append(row)
    return Table(paper.TITLES["table2"], cols, rows,
                 _NOTE + " 'original' is the untrained base model (ours only if the study evaluates it).", "table2")


def merge_tables(cells: Cells, paper_study: bool = True) -> list[Table]:
    """Paper Table 3 layout for every (model, dataset, PEFT) with merges: the merges' inputs, then merges."""
    pap = paper.lookup() if paper_study else {}
    allkeys = set(cells.stats) | set(pap)
    groups = _order({k[:3] for k in cells.stats if k[3] == "merged"},
                    [("Mistral-7b", "beavertails", "qlora"), ("Mistral-7b-Ins", "beavertails", "qlora")])
    tables = []
    for g in groups:
        keys = [k for k in allkeys if k[:3] == g]
        merged = [k for k in keys if k[3] == "merged"]
        benches = _order({k[6] for k in merged}, BENCH_ORDER)
        variants = _order({(k[3], k[4], k[5]) for k in keys if k[3] in ("harmless", "helpful")}, [])
        variants = sorted(variants, key=lambda v: (METHOD_ORDER.index(v[1]) if v[1] in METHOD_ORDER else 9, v[0]))
        mvars = sorted({(k[3], k[4], k[5]) for k in merged},
                       key=lambda v: (str(v[2]).split(":")[0] != "slerp", str(v[2]), len(v[1] or ""),
                                      METHOD_ORDER.index(v[1]) if v[1] in METHOD_ORDER else 9))
        cols = ["run"] + [f"{paper.BENCHMARK_NAMES.get(b, b)}{s}" for b in benches for s in ("", " paper")]
        rows = []
        for pref, m, mm in variants + mvars:
            if mm is None:
                label = f"{pref.capitalize()}-{method_label(m)}"
            else:
                base, _, name = str(mm).partition(":")
                label = f"{paper.MERGE_NAMES.get(base, base)}-{method_label(m)}" + (f" [{name}]" if name else "")
            row = [label]
            for b in benches:
                k = (*g, pref, m, mm, b)
                st = cells.stats.get(k)
                row += [st.text() if st else MISSING, fmt(pap.get(k))]
            rows.append(row)
        name = cells.model_names.get(g[0], g[0])
        title = f"Merges vs their inputs — {name}, {paper.DATASET_NAMES.get(g[1], g[1])}, {_peft(g[2])}"
        if any(k in pap for k in keys):
            title += " (paper Table 3)"
        tables.append(_drop_empty_paper_columns(Table(title, cols, rows, _NOTE if pap else _OWN_NOTE,
                                                      f"merges-{'-'.join(map(str, g))}")))
    return tables


def all_tables(stats: Stats, primary: dict[str, str], paper_study: bool = True) -> list[Table]:
    """The overview, then the paper's layouts. A custom study (not `is_paper_study`) gets no paper
    numbers and no Table 2 frame; a paper study gets Table 2 when it has one of its Mistral cells."""
    cells = final_cells(stats, primary)
    t2 = [table2(cells)] if paper_study and any(k[0] in ("Mistral-7b", "Mistral-7b-Ins") and k[1:3] == (
        "beavertails", "qlora") and k[3] in _TABLE2_PREFS for k in cells.stats) else []
    return [overview_table(stats, primary), *sft_dpo_tables(cells, paper_study), *t2,
            *merge_tables(cells, paper_study)]


def markdown(tables: list[Table], title: str) -> str:
    return f"# {md_cell(title)}\n\n" + "\n".join(t.markdown() for t in tables)


HTML_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f0f0f0} td:first-child,td:nth-child(2){text-align:left}
.note{color:#555;font-size:13px} .problems li{font-family:monospace;font-size:12px}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
.scroll{overflow-x:auto;max-width:100%}
"""


def html_page(tables: list[Table], title: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{HTML_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            + "".join(t.html() for t in tables) + "</body></html>")
