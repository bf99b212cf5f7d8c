"""What `alignkit status` prints for a person: one line per array, or per-job rows, fit to the
terminal (`COLUMNS`/`LINES`, as shutil.get_terminal_size reads them).

An array is one SLURM array, one sbatch (alignkit/launch.py queues each group of
`Plan.array_keys()`, stage × resource class × upstream group, as one array, or several beyond
MaxArraySize): here, the journal's submission a job's latest attempt belongs to; jobs never
submitted are grouped by stage and resource class from the manifest. Plain-text bars: rich is in the venv only as a dependency of something else,
not pinned by us (requirements/constraints.txt), so it is not used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from alignkit.contract.stages import STAGE_NAMES
from alignkit.status import ACTIVE_STATES, FAILED_STATES, JobStatus, StudyStatus

RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING"})
# count columns: header, and the states each counts (what is not listed falls in OTHER)
HELD = frozenset({"HELD"})  # queued with submit --hold: starts only when released
WAITING = ACTIVE_STATES - RUNNING - HELD
COUNTS = (("DONE", frozenset({"COMPLETED"})), ("RUN", RUNNING), ("PEND", WAITING), ("HELD", HELD),
          ("FAIL", FAILED_STATES), ("TODO", frozenset({"UNSUBMITTED"})))
RED, RESET = "\x1b[31m", "\x1b[0m"


@dataclass
class Array:
    stage: str
    label: str
    jobs: list[JobStatus] = field(default_factory=list)
    submitted_at: float | None = None

    def count(self, states: frozenset[str]) -> int:
        return sum(j.state in states for j in self.jobs)


def _res_label(res: dict) -> str:
    gpus, mins = res.get("gpus"), res.get("time_min")
    parts = [f"{gpus}gpu" if isinstance(gpus, int) and gpus else "cpu"]
    if isinstance(mins, int):
        parts.append(f"{mins // 60}h" if mins % 60 == 0 and mins >= 60 else f"{mins}m")
    return " ".join(parts)


def arrays(st: StudyStatus) -> list[Array]:
    """The study's arrays, by stage (train, eval, merge, judge: contract.stages.STAGE_NAMES), then as the manifest lists them."""
    out: dict[tuple, Array] = {}
    for j in st.jobs:
        att = j.attempt
        if att is not None:
            key = (j.stage, att.token)
            where = f"#{att.array_job_id}" if att.array_job_id else att.executor
            label = f"{j.stage} {_res_label(j.resources)} {where}"
        else:
            key = (j.stage, "unsubmitted", tuple(sorted((k, str(v)) for k, v in j.resources.items())))
            label = f"{j.stage} {_res_label(j.resources)} (not queued)"
        a = out.setdefault(key, Array(j.stage, label))
        a.jobs.append(j)
        if att is not None:
            a.submitted_at = att.time if a.submitted_at is None else min(a.submitted_at, att.time)
    order = {s: i for i, s in enumerate(STAGE_NAMES)}
    return sorted(out.values(), key=lambda a: order.get(a.stage, len(order)))  # stable: manifest order within


def eta_s(done_elapsed: list[int], running_elapsed: list[int], pending: int) -> float | None:
    """Seconds until an array's queued work ends, from its finished elements: each running one
    needs the mean finished time less what it has run, each pending one the mean, shared over
    the elements now running (at least one). None before any element has finished."""
    if not done_elapsed:
        return None
    mean = sum(done_elapsed) / len(done_elapsed)
    work = sum(max(0.0, mean - e) for e in running_elapsed) + pending * mean
    return work / max(1, len(running_elapsed))


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def bar(a: Array, width: int) -> str:
    """`[###>>x....] 41%`: # done, > running, x failed, . the rest; % of elements done."""
    n = max(1, len(a.jobs))
    inner = max(1, width - 7)
    done, run, fail = a.count(COUNTS[0][1]), a.count(RUNNING), a.count(FAILED_STATES)
    cells = [round(inner * c / n) for c in (done, run, fail)]
    fill = "#" * cells[0] + ">" * cells[1] + "x" * cells[2]
    return f"[{fill[:inner].ljust(inner, '.')}]{100 * done // n:>4d}%"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def clip_middle(text: str, width: int) -> str:
    """Cut in the middle: a run name's end (its seed, the stage) stays visible."""
    if len(text) <= width:
        return text
    if width < 8:
        return clip(text, width)
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + "…" + text[len(text) - tail:]


def ended_at(a: Array) -> float | None:
    """When an array's last job ended; None while any is still queued or running or unknown."""
    if any(j.state in ACTIVE_STATES for j in a.jobs):
        return None
    ends = [j.ended_at for j in a.jobs if j.ended_at is not None]
    return max(ends) if ends else None


def paint(line: str, colour: bool) -> str:
    """A failure line in red on a terminal (never when piped: colour=False)."""
    return f"{RED}{line}{RESET}" if colour else line


def render_arrays(st: StudyStatus, width: int, height: int, now: float | None = None, colour: bool = False) -> str:
    """Header, one line per array, the failures with their reasons (as many as fit `height`),
    and the warnings; no line longer than `width` but the warnings (shown whole)."""
    now = time.time() if now is None else now
    arrs = arrays(st)
    label_w = min(max([len(a.label) for a in arrs] + [5]), max(12, width // 4))
    counts_w = 6 * len(COUNTS)
    tail_w = 2 + 8 + 1 + 8  # ELAPSED ETA
    bar_w = max(10, width - label_w - counts_w - tail_w - 2)
    head = (f"{'ARRAY'.ljust(label_w)}" + "".join(f"{h:>6}" for h, _ in COUNTS) + "  "
            + "PROGRESS".ljust(bar_w) + f"  {'ELAPSED':>8} {'ETA':>8}")
    failed = [j for j in st.jobs if j.state in FAILED_STATES]
    running = sum(j.state in RUNNING for j in st.jobs)
    lines = [clip(f"{st.sweep}: {len(st.jobs)} jobs in {len(arrs)} arrays, {running} running, "
                  f"{len(failed)} failed" + ("" if st.sacct_ok else "  (accounting unreachable: states may lag)"),
                  width), clip(head, width)]
    for a in arrs:
        done = [j.elapsed_s for j in a.jobs if j.state == "COMPLETED" and j.elapsed_s is not None]
        run = [j.elapsed_s or 0 for j in a.jobs if j.state in RUNNING]
        pend, held = a.count(WAITING), a.count(HELD)
        active = bool(run or pend)
        end = ended_at(a) or now  # ELAPSED stops when the array's last job ended
        elapsed = max(0.0, end - a.submitted_at) if a.submitted_at is not None else None
        eta = eta_s(done, run, pend) if active else None
        tail = fmt_s(eta) if active else ("held" if held else "ended")
        row = clip(clip(a.label, label_w).ljust(label_w) + "".join(f"{a.count(s):>6}" for _, s in COUNTS) + "  "
                   + bar(a, bar_w) + f"  {fmt_s(elapsed):>8} {tail:>8}", width)
        lines.append(paint(row, colour and bool(a.count(FAILED_STATES))))
    if st.awaiting_selection:  # a two-phase study's second phase: not queued before the selection
        counts = ", ".join(f"{n} {stage}" for stage, n in st.awaiting_selection.items())
        lines.append(clip(f"waiting for the selection: {counts} of runs: selected benchmarks (after "
                          f"`alignkit collect`, `alignkit submit` queues the picked runs')", width))
    warn = [f"warning: {w}" for w in st.warnings]  # whole: a person must read them (names a file)
    if failed:
        room = max(3, height - len(lines) - 2 - len(warn))
        shown = failed if len(failed) <= room else failed[:room - 1]
        lines.append(paint(f"failures ({len(failed)}):", colour))
        for j in shown:
            lines.append(paint(clip(f"  {j.stage:<5} {j.name}  {j.state}: {j.reason or 'no reason recorded'}", width),
                               colour))
        if len(shown) < len(failed):
            lines.append(clip(f"  ... {len(failed) - len(shown)} more: alignkit status --failed", width))
    lines += warn
    return "\n".join(lines)


def _progress(j: JobStatus) -> str:
    p = j.progress or {}
    if not p.get("max_steps"):
        return ""
    out = f"{p.get('step')}/{p.get('max_steps')}"
    if p.get("benchmark"):
        out += f" {p['benchmark']}"
    if p.get("items_done") is not None:
        out += f" {p['items_done']} items"
    if p.get("loss") is not None:
        out += f" loss={p['loss']:.4g}"
    return out


def render_jobs(st: StudyStatus, jobs: list[JobStatus], width: int, colour: bool = False) -> str:
    """One row per job; fixed columns at their natural width (left out where no row has a value),
    NAME and REASON share the rest (NAME up to 48 columns, cut in the middle so the seed and the
    stage at its end stay visible; REASON cut at its end), failed rows red on a terminal."""
    head = ("ID", "STAGE", "STATE", "ELAPSED", "NODE", "SLURM_ID", "PROGRESS")
    rows = [(j.id[:10], j.stage, j.state, fmt_s(j.elapsed_s), clip(j.node or "-", 12), j.slurm_id or "-",
             clip(_progress(j), 28)) for j in jobs]
    keep = [i for i in range(len(head)) if i < 3 or any(r[i] not in ("", "-") for r in rows)]  # no empty columns
    head, rows = tuple(head[i] for i in keep), [tuple(r[i] for i in keep) for r in rows]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fixed = sum(widths) + 2 * len(widths)
    longest = max([len(j.name) for j in jobs] + [4])
    has_reason = any(j.reason for j in jobs)
    # NAME: up to 40 columns, but half of what is left when there are reasons to show beside it
    name_w = max(8, min(48, longest, (width - fixed) // 2 if has_reason else width - fixed))
    reason_w = max(0, width - fixed - name_w - 2)

    def line(cells: tuple, name: str, reason: str) -> str:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + clip_middle(name, name_w).ljust(name_w)
        return clip((text + "  " + clip(reason, reason_w)).rstrip() if reason and reason_w > 1 else text.rstrip(), width)

    lines = [line(head, "NAME", "REASON")] + [paint(line(r, j.name, j.reason or ""), colour and j.state in FAILED_STATES)
                                              for r, j in zip(rows, jobs, strict=True)]
    lines.append(clip(f"{len(jobs)} of {len(st.jobs)} jobs  {st.summary_line()}", width))
    lines += [f"warning: {w}" for w in st.warnings]
    return "\n".join(lines)


def render_table(head: list[str], rows: list[list[str]], width: int, clip_cols: tuple[int, ...] = (),
                 min_w: int = 6) -> list[str]:
    """A plain table no wider than `width`: columns at their natural width, two spaces apart; when
    too wide, the `clip_cols` (labels) are cut with '…' (widest first, to `min_w`), then trailing
    columns are left out, and a last line says how many (`alignkit collect --show`)."""
    n = len(head)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(n)]

    def total(k: int) -> int:
        return sum(widths[:k]) + 2 * (k - 1)

    while total(n) > width:
        cands = [i for i in clip_cols if i < n and widths[i] > min_w]
        if not cands:
            break
        i = max(cands, key=lambda c: widths[c])
        widths[i] -= 1
    shown = n
    while shown > 1 and total(shown) > width:
        shown -= 1
    lines = ["  ".join(clip(str(c), widths[i]).ljust(widths[i]) for i, c in enumerate(r[:shown])).rstrip()
             for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * widths[i] for i in range(shown)))
    lines = [clip(line, width) for line in lines]
    if shown < n:   # wrapped, not cut: every left-out column is named
        import textwrap

        lines += textwrap.wrap(f"… {n - shown} more column(s) not shown at {width} columns: "
                               + ", ".join(head[shown:]), max(width, 1))
    return lines
