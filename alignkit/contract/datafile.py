"""Bounded, streaming checks of a local data file, before anything parses it.

Each check returns None or what is wrong as a phrase to follow the file's name and a colon
("a symlink loop", "line 3: byte 120 (0xff) is not UTF-8; ...").

A data file named by a spec may be anything a path can name: a symlink loop, a FIFO (opening it
blocks until a writer comes), /dev/zero (endless), a 1 GiB sparse file of NUL bytes (one endless
"line"), bytes that are not UTF-8. Each is one line naming the file and what is wrong, found in a
bounded time and memory, never a hang nor a traceback:

- `file_problem(path)`: stat only (no open of a non-regular file) plus the first SNIFF_BYTES of a
  text file: a loop, a missing or unreadable path, a FIFO, device or socket, NUL bytes in a text
  data file (.jsonl, .json, .csv). Cheap: `plan` runs it on every local data path of a spec.
- `text_problem(path)`: one streaming pass in CHUNK-sized reads with an incremental UTF-8 decoder:
  the first byte that is not UTF-8 (line and byte offset), a NUL byte, a line longer than
  MAX_LINE_BYTES, stopping after `max_bytes`. The job's data loader (jobs/data/source.py) and
  `preview` run it before `datasets` reads the file, whose errors for these surface later as
  tracebacks (pyarrow decodes strings lazily).

Login-side and stdlib-only (torch-free): the compiler and the compute side share it.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path

TEXT_SUFFIXES = (".jsonl", ".json", ".csv")
SNIFF_BYTES = 64 * 1024
CHUNK = 1 << 20
NL = b"\n"
MAX_LINE_BYTES = 64 << 20  # one JSON-lines row; a longer one is a file without newlines (sparse, binary)
_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _is_text(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".xz", ".zst")]
    compressed = len(suffixes) != len(path.suffixes)
    return not compressed and bool(suffixes) and suffixes[-1] in TEXT_SUFFIXES


def stat_problem(path: str | os.PathLike) -> str | None:
    """What makes `path` no file or folder to read data from, by stat alone (nothing is opened)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "does not exist" + (" (a dangling symlink)" if os.path.islink(path) else "")
        return f"cannot be read ({os.strerror(exc.errno or 0) or type(exc).__name__})"
    for test, kind in _KINDS:
        if test(st.st_mode):
            return f"{kind}, not a data file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def file_problem(path: str | os.PathLike) -> str | None:
    """`stat_problem`, then for a text data file the first SNIFF_BYTES: no NUL byte."""
    bad = stat_problem(path)
    if bad or not os.path.isfile(path) or not _is_text(Path(path)):
        return bad
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    at = head.find(b"\0")
    if at >= 0:
        return (f"a NUL byte at byte {at}: not a text {Path(path).suffix} file (a binary or sparse "
                f"file?)")
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(head)  # final=False: a cut last character is fine
    except UnicodeDecodeError as exc:
        return (f"line {head.count(NL, 0, exc.start) + 1}: byte {exc.start} (0x{head[exc.start]:02x}) is not UTF-8; "
                f"save the file as UTF-8")
    return None


def text_problem(path: str | os.PathLike, max_bytes: int | None = None) -> str | None:
    """`file_problem`, then one bounded streaming pass over a text data file: UTF-8, no NUL byte,
    no line over MAX_LINE_BYTES; reads at most `max_bytes` (None: the whole file)."""
    bad = file_problem(path)
    if bad or not os.path.isfile(path) or not _is_text(Path(path)):
        return bad
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line, offset, since_newline = 1, 0, 0
    with open(path, "rb") as f:
        while max_bytes is None or offset < max_bytes:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:  # exc.start counts from the bytes the decoder held back
                i = min(max(exc.start - (len(exc.object) - len(chunk)), 0), len(chunk) - 1)
                return (f"line {line + chunk.count(NL, 0, i)}: byte {offset + i} (0x{chunk[i]:02x}) is "
                        f"not UTF-8; save the file as UTF-8")
            nul = chunk.find(b"\0")
            if nul >= 0:
                return (f"line {line + chunk.count(NL, 0, nul)}: a NUL byte at byte {offset + nul}: not a text "
                        f"file (a binary or sparse file?)")
            last = chunk.rfind(NL)
            since_newline = len(chunk) - last - 1 if last >= 0 else since_newline + len(chunk)
            if since_newline > MAX_LINE_BYTES:
                return f"line {line + chunk.count(NL)}: longer than {MAX_LINE_BYTES >> 20} MiB (no newline)"
            line += chunk.count(NL)
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return f"line {line}: the file ends inside a UTF-8 character (truncated?)"
    return None


DATA_SUFFIXES = (*TEXT_SUFFIXES, ".parquet", ".arrow")


def folder_problem(folder: str | os.PathLike, limit: int = 10_000) -> str | None:
    """`file_problem` of each data file under a local dataset folder (the first `limit` entries, links
    not followed into folders): "<relative path>: <what is wrong>" for the first bad one."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            seen += 1
            if seen > limit:
                return None
            path = os.path.join(root, name)
            if not name.lower().endswith(DATA_SUFFIXES):
                continue
            bad = file_problem(path)
            if bad:
                return f"{os.path.relpath(path, folder)}: {bad}"
    return None
