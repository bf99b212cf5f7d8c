"""The data check `plan` and `submit` run before anything is written or queued (`check(plan, command)`).

For every dataset a study trains on, a bounded sample is read: the first SAMPLE_ROWS rows of each
source a run reads (a preference's file, or the first data file of a folder's split), local files
and hub datasets already in the Hugging Face cache; a hub dataset not cached is named as unchecked
(a warning), never downloaded. The sample goes through the same format plug-ins the train job uses
(alignkit/plugins/formats/), so what fails there fails here, one line naming the file, the row and
the field: a missing field, a wrong type, an empty response, a format no column set matches, data
a method cannot train on (unpaired rows for DPO). The share of sampled pairs whose chosen equals
rejected is a warning (the job drops them), an error when it is every sampled pair. Then the first
RENDER_ROWS converted rows of each source go through each model's template and tokenizer, when the
tokenizer files are local or cached: a model whose `template: chat_template` tokenizer has none,
or a template that cannot render a row's roles, is one line naming the model, the file and the row.

Problems raise UserError (one line each: exit 2, nothing written); unchecked sources are printed as
warnings. Bounded: at most SAMPLE_ROWS rows and SAMPLE_BYTES bytes per source, one tokenizer load
per model (docs/data.md gives the measured time). Neither torch nor transformers is imported: the
templates render with jinja2 as transformers renders them (alignkit/plan/chat_render.py) and the
tokenizer.json is read with the `tokenizers` library alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from alignkit.contract.datafile import DATA_SUFFIXES, stat_problem, text_problem
from alignkit.contract.errors import UserError
from alignkit.contract.hub import hub_snapshot, is_local
from alignkit.plugins import formats

SAMPLE_ROWS = 64  # rows read per source
SAMPLE_BYTES = 16 << 20  # bytes read per source at most (a JSON-lines file's first rows)
RENDER_ROWS = 2  # converted rows rendered through each model's template
MAX_FOLDER_FILES = 10_000
SPLIT_WORDS = ("train", "test", "validation", "valid", "dev", "eval")


class Unchecked(Exception):
    """A source this check cannot read without downloading or guessing; str() says why."""


# ---- the bounded sample -------------------------------------------------------------------------------
def _strip_compression(path: Path) -> list[str]:
    return [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".xz", ".zst")]


def _open_text(path: Path) -> io.TextIOBase:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        import gzip
        return gzip.open(path, "rt", encoding="utf-8")
    if suffix == ".bz2":
        import bz2
        return bz2.open(path, "rt", encoding="utf-8")
    if suffix == ".xz":
        import lzma
        return lzma.open(path, "rt", encoding="utf-8")
    if suffix == ".zst":
        raise Unchecked("zstd-compressed: not read at plan time")
    return open(path, encoding="utf-8")


def _cell(value: str) -> Any:
    """A CSV cell as `datasets`' csv builder (pandas) types it: booleans and integers."""
    if value in ("True", "False"):
        return value == "True"
    if value.lstrip("-").isdigit():
        return int(value)
    return value if value != "" else None


def _first_char(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read(4096).lstrip()[:1]


def read_sample(path: Path) -> tuple[list[dict], list[str]]:
    """The first SAMPLE_ROWS rows of one data file and its column names (raises Unchecked, or
    UserError-worthy ValueError naming the row)."""
    kind = (_strip_compression(path) or [""])[-1]
    if kind == ".parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path)
        batch = next(f.iter_batches(batch_size=SAMPLE_ROWS), None)
        return (batch.to_pylist() if batch is not None else []), list(f.schema_arrow.names)
    if kind == ".arrow":
        import pyarrow as pa

        try:
            reader = pa.ipc.open_stream(pa.memory_map(str(path)))
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            table = reader.read_all().slice(0, SAMPLE_ROWS)
            return table.to_pylist(), list(table.schema.names)
        batch = next(iter(reader), None)
        return (batch.slice(0, SAMPLE_ROWS).to_pylist() if batch is not None else []), list(reader.schema.names)
    if kind == ".csv":
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            rows = []
            try:
                for row in reader:
                    rows.append({k: _cell(v) for k, v in row.items()})
                    if len(rows) >= SAMPLE_ROWS:
                        break
            except csv.Error as exc:  # e.g. a field over the csv module's limit, which pandas reads
                raise Unchecked(f"the csv module cannot read row {len(rows) + 1} ({exc})") from None
            return rows, list(reader.fieldnames or [])
    if kind == ".json" and path.suffix.lower() == ".json" and _first_char(path) == "[":  # one document
        if path.stat().st_size > SAMPLE_BYTES:
            raise Unchecked(f"a JSON document over {SAMPLE_BYTES >> 20} MiB (JSON lines are sampled, not read whole)")
        with open(path, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(doc, list):
            raise Unchecked("a JSON document that is not a list of rows")
        rows = doc[:SAMPLE_ROWS]
    elif kind in (".jsonl", ".json"):
        rows, read, n = [], 0, 0
        with _open_text(path) as f:
            while read <= SAMPLE_BYTES:
                line = f.readline(SAMPLE_BYTES + 1)  # bounded: a file without newlines is not read whole
                if not line:
                    break
                n += 1
                read += len(line)
                if len(line) > SAMPLE_BYTES:
                    raise ValueError(f"row {len(rows) + 1} (line {n}): longer than {SAMPLE_BYTES / 2**20:g} MiB")
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"row {len(rows) + 1} (line {n}): not valid JSON ({exc.msg})") from None
                if len(rows) >= SAMPLE_ROWS:
                    break
    else:
        raise Unchecked(f"unknown data file type {path.name!r}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"row {i + 1}: should be an object of fields, got {type(row).__name__}")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return rows, columns


def _split_files(folder: Path, split: str) -> list[Path]:
    """The data files `datasets` would read for `split` from a folder, by its naming convention
    (a file or folder named for the split; with no split named at all, every file is `train`)."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(root) / n for n in sorted(names) if n.lower().endswith(DATA_SUFFIXES)
                  or n.lower().endswith(tuple(s + c for s in DATA_SUFFIXES for c in (".gz", ".bz2", ".xz")))]
        if len(files) > MAX_FOLDER_FILES:
            break
    rel = {p: str(p.relative_to(folder)).lower() for p in files}
    named = [p for p in files if split.lower() in _words(rel[p])]
    if named:
        return named
    if split == "train" and not any(w in _words(rel[p]) for p in files for w in SPLIT_WORDS):
        return files
    return []


def _words(rel: str) -> set[str]:
    import re

    parts = set(re.split(r"[/\\._\-]+", rel))
    return parts | {rel.split("/")[-1].split(".")[0].split("-")[0]}


def source_file(ds: Any, pref: str) -> tuple[Path, str]:
    """(the file whose first rows a run with this preference reads, its label) as jobs/data reads
    them (`files`, else `subsets` or the format's own folders, else the source); raises Unchecked."""
    source, data_dir = ds.source, None
    files = ds.files
    if files is not None:
        where = files.get(pref)
        if where is None:
            raise Unchecked(f"no file for preference {pref!r}")  # plan's preference check names it
        if is_local(where):
            source = where
        else:
            data_dir = where
    else:
        subsets = ds.subsets
        if subsets is None and ds.format != formats.AUTO:
            subsets = getattr(formats.get(ds.format), "SUBSETS", None)
        if subsets is not None:
            if pref not in subsets:
                raise Unchecked(f"no subset for preference {pref!r}")
            data_dir = subsets[pref]
    split = ds.split
    if is_local(source):
        path = Path(source).expanduser()
        bad = stat_problem(path)
        if bad:
            raise ValueError(bad)
        if path.is_file():
            return path, str(path)
        folder = path / data_dir if data_dir else path
    else:
        snap = hub_snapshot(source, ds.revision, "dataset")
        if snap is None:
            raise Unchecked(f"{source}@{ds.revision} is not in the Hugging Face cache (run "
                            f"`alignkit prefetch` to have its rows checked at plan)")
        folder = snap / data_dir if data_dir else snap
    if not folder.is_dir():
        raise Unchecked(f"{folder} is not a folder")
    chosen = _split_files(folder, split)
    if not chosen:
        raise Unchecked(f"no data file for split {split!r} found by name under {folder}")
    return chosen[0], str(chosen[0])


# ---- the check ------------------------------------------------------------------------------------------
class _Part:
    def __init__(self, preference: str):
        self.preference, self.rows, self.kept, self.dropped = preference, 0, 0, {}

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class _Found:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []


def _runs(plan: Any) -> tuple[dict[tuple, dict], dict[tuple, dict]]:
    """The distinct (dataset, preference part) a study's training runs read, with the methods and
    models that read them, and the mixtures (dataset, parts). Configs are shared objects in the
    plan: keyed by identity, cheaply."""
    seen: dict[tuple, dict] = {}
    mixtures: dict[tuple, dict] = {}
    for job in plan.jobs:
        if job.stage != "train":
            continue
        cfg = job.config
        ds = cfg.dataset
        if len(cfg.preference) > 1:
            mixtures.setdefault((id(ds), cfg.preference), ds)
        for pref in cfg.preference:
            entry = seen.setdefault((id(ds), pref), {"dataset": ds, "preference": pref, "methods": {}, "models": {}})
            entry["methods"].setdefault(cfg.method.type, cfg.method.name)
            model = cfg.model
            entry["models"].setdefault((model.source, model.revision, model.template), model)
    return seen, mixtures


def _check_methods(entry: dict, name: str, label: str, found: _Found) -> None:
    from alignkit.plugins.methods import METHODS

    for method_type, method_name in entry["methods"].items():
        why = formats.refusal(METHODS.get(method_type), formats.row_type(name))
        if why:
            found.problems.append(f"datasets.{entry['dataset'].name}: {label} ({name}): method {method_name}: {why}")


def _check_source(entry: dict, found: _Found, samples: dict) -> Optional[tuple[list[dict], str]]:
    ds, pref = entry["dataset"], entry["preference"]
    where = f"datasets.{ds.name}"
    fmt = ds.format
    if fmt != formats.AUTO:  # a named format says its rows' type before any row is read
        _check_methods(entry, fmt, f"format {fmt}", found)
    try:
        path, label = source_file(ds, pref)
    except Unchecked as why:
        found.warnings.append(f"{where}: rows not checked: {why}")
        return None
    except ValueError as exc:
        found.problems.append(f"{where}: {ds.source}: {exc}")
        return None
    key = (str(path), fmt, pref)
    if key in samples:  # read and converted for another run already; its methods are this entry's own
        if samples[key] is not None and fmt == formats.AUTO:
            _check_methods(entry, samples[key][2], label, found)
        return samples[key] and samples[key][:2]
    samples[key] = None
    bad = text_problem(path, max_bytes=SAMPLE_BYTES)  # the bounded pass: UTF-8, no NUL, no endless line
    if bad:
        found.problems.append(f"{where}: {label}: {bad}")
        return None
    try:
        rows, columns = read_sample(path)
    except Unchecked as why:
        found.warnings.append(f"{where}: rows not checked: {label}: {why}")
        return None
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        found.problems.append(f"{where}: {label} {exc}" if str(exc).startswith("row ") else f"{where}: {label}: {exc}")
        return None
    except Exception as exc:  # pyarrow on a broken parquet file
        found.problems.append(f"{where}: {label}: cannot be read ({type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0]})")
        return None
    try:
        name = fmt if fmt != formats.AUTO else formats.detect(columns, rows[0] if rows else None, label)
        module = formats.get(name)
        own = getattr(module, "PREFERENCES", None)
        if own is not None and pref not in own:
            found.problems.append(f"{where}: {label} is {name} data, whose preferences are {', '.join(own)}, "
                                  f"not {pref!r}")
            return None
        part = _Part(pref)
        converted = module.convert(formats.Sample(rows, columns), label, part)
    except (formats.RowError, formats.UnknownFormat) as exc:
        found.problems.append(f"{where}: {exc}")
        return None
    identical = part.dropped.get("identical", 0)
    if part.rows and identical == part.rows:
        found.problems.append(f"{where}: {label}: all {part.rows} sampled rows have chosen == rejected "
                              f"(fields 'chosen', 'rejected'): nothing to learn from")
    elif identical:
        found.warnings.append(f"{where}: {label}: {identical} of the first {part.rows} rows "
                              f"({identical / part.rows:.0%}) have chosen == rejected; the train job drops them")
    if fmt == formats.AUTO:
        _check_methods(entry, name, label, found)
    samples[key] = (converted, label, name)
    return converted, label


def _conversations(row: dict) -> list[tuple[str, list[dict]]]:
    """(fields, messages) to render for one converted row."""
    if "messages" in row:
        return [("messages", row["messages"])]
    if "text" in row:
        return []
    if "chosen" in row:
        return [("prompt + chosen", row["prompt"] + row["chosen"]), ("prompt + rejected", row["prompt"] + row["rejected"])]
    return [("prompt + completion", row["prompt"] + row["completion"])]


class Tokenizer:
    """What the check needs of a model's tokenizer, read from its files without transformers'
    tokenizer classes (whose import loads torch): the chat template, BOS/EOS and the `tokenizers`
    model of tokenizer.json (None for a sentencepiece-only tokenizer: rendered, not tokenized)."""

    def __init__(self, folder: Path):
        cfg = folder / "tokenizer_config.json"
        config = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}
        jinja = folder / "chat_template.jinja"
        template = jinja.read_text(encoding="utf-8") if jinja.is_file() else config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one is what apply_chat_template uses
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        self.chat_template = template
        self.bos_token, self.eos_token = _token(config.get("bos_token")), _token(config.get("eos_token"))
        self.model = None
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer as Fast

            self.model = Fast.from_file(str(folder / "tokenizer.json"))

    def encode(self, text: str) -> list[int]:
        return self.model.encode(text, add_special_tokens=False).ids if self.model is not None else []


def _token(value: Any) -> str:
    return value.get("content", "") if isinstance(value, dict) else (value or "")


def _tokenizer(model: Any) -> Optional[Tokenizer]:
    source = model.source
    folder = Path(source).expanduser() if is_local(source) else hub_snapshot(source, model.revision, "model")
    if folder is None or not folder.is_dir() or not any((folder / f).is_file() for f in
                                                         ("tokenizer.json", "tokenizer_config.json")):
        return None
    try:
        return Tokenizer(folder)
    except Exception:  # files this check cannot read: the job's own load names the problem
        return None


def _render(model: Any, tok: Tokenizer, converted: list[dict], label: str, found: _Found) -> None:
    from alignkit.contract.chat_templates import TEMPLATES
    from alignkit.plan.chat_render import render

    family = model.template
    where = f"models.{model.name}"
    template = TEMPLATES.get(family) or tok.chat_template
    if not template:
        found.problems.append(f"{where}: template: chat_template asks for the tokenizer's own chat template, "
                              f"but the tokenizer of {model.source} has none (pick vicuna, mistral or plain)")
        return
    for i, row in enumerate(converted[:RENDER_ROWS]):
        for fields, messages in _conversations(row):
            try:
                text = render(template, messages, bos_token=tok.bos_token, eos_token=tok.eos_token)
                tok.encode(text)
            except Exception as exc:
                roles = ", ".join(dict.fromkeys(m["role"] for m in messages))
                found.problems.append(f"{where} (template {family}): cannot render {label} row {i + 1}, fields "
                                      f"{fields} (roles {roles}): {(str(exc).splitlines() or [type(exc).__name__])[0]}")
                return


def check(plan: Any, command: str) -> None:
    """Check every dataset the plan trains on (see the module docstring); print what could not be
    checked as warnings; raise UserError with one line per problem."""
    runs, mixtures = _runs(plan)
    if not runs:
        return
    found, samples, tokenizers, rendered, types = _Found(), {}, {}, set(), {}
    for (ds_id, pref), entry in runs.items():
        got = _check_source(entry, found, samples)
        if got is None:
            continue
        converted, label = got
        if converted:
            types[(ds_id, pref)] = (formats.rows_type(converted[0]), label)
        for key, model in entry["models"].items():
            if key not in tokenizers:
                tokenizers[key] = _tokenizer(model)
            if tokenizers[key] is not None and (key, label) not in rendered:
                rendered.add((key, label))
                _render(model, tokenizers[key], converted, label, found)
    for (ds_id, parts), ds in mixtures.items():  # the job concatenates the parts: one type of rows
        kinds = [types[(ds_id, p)] for p in parts if (ds_id, p) in types]
        if len({k for k, _ in kinds}) > 1:
            found.problems.append(f"datasets.{ds.name}: the mixture {'+'.join(parts)} mixes "
                                  + " and ".join(f"{k.replace('_', ' ')} rows ({label})" for k, label in kinds)
                                  + ": a mixture's parts must be of one type")
    for line in dict.fromkeys(found.warnings):
        print(f"alignkit {command}: warning: {line}", file=sys.stderr)
    if found.problems:
        raise UserError("\n".join(dict.fromkeys(found.problems)))
