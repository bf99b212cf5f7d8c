"""The docs stay true to the tree (issue 21 item 10): every relative link in README.md and docs/*.md
resolves (the file, and the #anchor to a heading of it), every repository path they name exists,
docs/cli.md documents every command and option of the argparse parsers (and none that is gone), and
every list of method types in the docs is the method registry's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from alignkit.cli.main import build_parser
from alignkit.plugins.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# a path into this repository named in prose: a top-level folder, then a path; one holding a pattern
# (`alignkit/plugins/benchmarks/<type>.py`, `config-{train,eval}.json`, `jobs/*/wandb`) is not checked
PATH = re.compile(r"(?<![\w./~-])((?:docs|alignkit|jobs|tests|bench|sweeps|slurm|assets|requirements)/[^\s`'\")\]|;:]*)")
PATTERN = re.compile(r"[<>{}*]")
# Names that look like paths here and are not: TensorBoard text-summary tags the train job writes
# (docs/training.md, "Trackers"), and a file of TRL's repository (docs/methods.md, KTO's batch size).
NOT_PATHS = {"alignkit/run_name", "alignkit/tags", "alignkit/config", "docs/source/kto_trainer.md"}


def _prose(text: str) -> str:
    """The text without fenced code blocks (example output, shell sessions), lines kept in place."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else line)
    return "\n".join(out)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' removed, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def test_the_anchor_rule_is_githubs():
    assert _slug("A job (manifest entry and `alignkit plan --json`)") == "a-job-manifest-entry-and-alignkit-plan---json"
    assert _slug("Mixtures, sampling, validation") == "mixtures-sampling-validation"
    assert _slug("`--prune`") == "--prune"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    text = _prose(doc.read_text())
    bad = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            bad.append(f"{doc.name}:{_line(text, m.start())}: {target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            bad.append(f"{doc.name}:{_line(text, m.start())}: {target}: no heading with anchor #{anchor}")
    assert not bad, "\n".join(bad)


def _ignored(paths: list[str]) -> set[str]:
    """The paths git ignores (build outputs the docs name, e.g. bench/gpu-wheels/set1)."""
    if not paths:
        return set()
    proc = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    return set(proc.stdout.split())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_repository_path_named_exists(doc):
    text = _prose(doc.read_text())
    missing: dict[str, int] = {}
    for m in PATH.finditer(text):
        ref = m.group(1).rstrip(".,-*")   # sentence punctuation, **bold**
        if PATTERN.search(ref) or ref in NOT_PATHS or (ROOT / ref).exists():
            continue
        module = re.sub(r"\.\w+$", "", ref)   # `jobs/paged_optim.RepageOnResume`: a name in a module
        if module != ref and (ROOT / f"{module}.py").exists():
            continue
        missing.setdefault(ref, _line(text, m.start()))
    gone = sorted(set(missing) - _ignored(list(missing)), key=missing.get)
    assert not gone, "\n".join(f"{doc.name}:{missing[r]}: {r} does not exist" for r in gone)


def test_a_dead_path_and_a_dead_anchor_are_caught(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("# Title\nSee docs/nothing-here.md and [t](#title), [u](#nope), [v](missing.md).\n"
                   "```\nsweeps/x.yaml:1: in a code block: not checked\n```\n")
    text = _prose(doc.read_text())
    assert [m.group(1) for m in PATH.finditer(text)] == ["docs/nothing-here.md"]
    assert [m.group(1) for m in PATH.finditer("**alignkit/eval_rates.json**, `tests/unit/golden/config-{a,b}.json`")] \
        == ["alignkit/eval_rates.json**,", "tests/unit/golden/config-{a,b}.json"]
    assert not (ROOT / "docs/nothing-here.md").exists()
    links = [m.group(1) for m in LINK.finditer(text)]
    assert links == ["#title", "#nope", "missing.md"]
    assert anchors(doc) == {"title"}


# ---------------------------------------------------------------- docs/cli.md against the parsers
def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## alignkit (\S+)\s*$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _commands() -> dict:
    return build_parser().commands  # type: ignore[attr-defined]


def test_cli_md_has_a_section_per_command_and_no_other():
    sections = _sections((ROOT / "docs" / "cli.md").read_text())
    assert sorted(sections) == sorted(_commands())


@pytest.mark.parametrize("command", sorted(_commands()))
def test_cli_md_documents_every_option_and_no_stale_one(command):
    section = _sections((ROOT / "docs" / "cli.md").read_text())[command]
    parser = _commands()[command]
    known = set()
    missing = []
    for action in parser._actions:
        if "-h" in action.option_strings:
            continue
        if action.option_strings:
            known.update(action.option_strings)
            for opt in action.option_strings:
                if not re.search(r"`" + re.escape(opt) + r"[` \[]", section):
                    missing.append(opt)
        else:
            name = action.metavar or action.dest
            if f"`{name}`" not in section:
                missing.append(name)
    assert not missing, f"docs/cli.md, alignkit {command}: not documented: {', '.join(missing)}"
    table = [line for line in section.splitlines() if line.startswith("| `")]
    named = {opt for line in table for opt in re.findall(r"`(-{1,2}[\w-]+)", line.split("|")[1])}
    assert named <= known, f"docs/cli.md, alignkit {command}: no such option: {', '.join(sorted(named - known))}"


# ---------------------------------------------------------------- method types, from the registry
def _types_in(line: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", line)) | set(re.findall(r'"type": "([a-z|]+)"', line)[0].split("|")
                                                       if '"type": "' in line else [])


def test_every_list_of_method_types_is_the_registry():
    registered = set(METHODS.names())
    spec = (ROOT / "docs" / "spec.md").read_text()
    methods_section = spec[spec.index("## methods.NAME"):]
    rows = {
        "docs/spec.md methods.NAME type": next(ln for ln in methods_section.splitlines()
                                              if ln.startswith("| `type` |")).split("|")[3],
        "docs/training.md train_metrics method": next(ln for ln in (ROOT / "docs" / "training.md").read_text().splitlines()
                                                      if ln.startswith("| `method` |")).split("|")[2],
        "docs/contract.md method config": next(ln for ln in (ROOT / "docs" / "contract.md").read_text().splitlines()
                                               if '"method": {' in ln and '"type": "' in ln),
    }
    table = (ROOT / "docs" / "methods.md").read_text().split("| `type` |", 1)[1].split("\n\n", 1)[0]
    rows["docs/methods.md table"] = " ".join(ln.split("|")[1] for ln in table.splitlines()[2:] if ln.startswith("| `"))
    for where, line in rows.items():
        found = _types_in(line) if "contract" in where else set(re.findall(r"`([a-z_]+)`", line))
        assert found == registered, f"{where}: lists {sorted(found)}, the registry has {sorted(registered)}"
