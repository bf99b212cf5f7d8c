"""Atomic file writes: every file alignkit or a job writes appears whole or not at all.

A write goes to a temporary name in the same directory, is fsynced, then renamed over the
target, so a reader (status, collect, a requeued job) never sees half a file, even if the
writer is killed mid-way.

Modes: the result has the mode a plain `open()`/`mkdir()` would give (a new file 0666 & ~umask,
a new directory 0777 & ~umask, an existing file keeps its mode), not mkstemp's 0600/0700, so a
collaborator in the group can read (under umask 002 also write) a shared study.

Temporary names are `.<name>~<host>~<pid>~<random>.tmp`. A writer killed with SIGKILL cannot
remove its own; the next write of the same target does (`remove_stale_temps`): a temporary of a
dead process on this host at once, one from another host after STALE_FOREIGN_S.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

# A temporary of another host cannot be checked for a live writer; a checkpoint or merged model
# being built in one can take a long time, so only a day-old one is surely abandoned.
STALE_FOREIGN_S = 24 * 3600
HOST = re.sub(r"[^A-Za-z0-9.\-]", "_", socket.gethostname()) or "host"
_TMP = re.compile(r"^\.(?P<name>.+)~(?P<host>[A-Za-z0-9._\-]+)~(?P<pid>\d+)~[^~/]*\.tmp$")
_umask_lock = threading.Lock()


def umask() -> int:
    """The process umask, without changing it (another thread may be creating files right now)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # no /proc (not Linux): the usual set-and-restore
        old = os.umask(0o022)
        os.umask(old)
    return old


def _temp_prefix(name: str) -> str:
    return f".{name}~{HOST}~{os.getpid()}~"


def temp_name(name: str, tag: str = "") -> str:
    """A temporary name for `name` in its directory that remove_stale_temps recognises once this process is gone."""
    return f"{_temp_prefix(name)}{tag}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def is_stale_temp(parent: str | os.PathLike, name: str, now: float | None = None) -> bool:
    """Whether `name` in `parent` is a temporary of an atomic write whose writer is gone."""
    m = _TMP.match(name)
    if not m:
        return False
    if m["host"] == HOST:
        pid = int(m["pid"])
        return pid != os.getpid() and not _pid_alive(pid)
    try:
        age = (now or time.time()) - os.lstat(os.path.join(parent, name)).st_mtime
    except OSError:
        return False
    return age > STALE_FOREIGN_S


def remove_stale_temps(parent: str | os.PathLike, target: str | None = None) -> list[str]:
    """Remove abandoned temporaries in `parent` (of `target` only, when given); returns their paths.

    Best effort: a temporary that cannot be removed (read-only filesystem) is left for next time.
    """
    removed = []
    try:
        names = [e.name for e in os.scandir(parent)]
    except OSError:
        return removed
    now = time.time()
    for name in names:
        if target is not None and not name.startswith(f".{target}~"):
            continue
        if not is_stale_temp(parent, name, now):
            continue
        path = os.path.join(parent, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(path)
        except OSError:  # gone already, or a read-only filesystem
            continue
    return removed


def _file_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)  # open() on an existing file keeps its mode
    except FileNotFoundError:
        return 0o666 & ~umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # mkdir honours the umask itself
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode(path))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # write()/fsync() name no file: say which
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _dir_mode(path: str | os.PathLike) -> int:
    # keep setgid: in a group's shared directory new subdirectories inherit it, and chmod would drop it
    keep = os.stat(path).st_mode & stat.S_ISGID
    return keep | (0o777 & ~umask())


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; rename it into place only if the block succeeds.

    An existing directory at `path` is replaced (moved aside first, removed after the rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # mkdir honours the umask itself
    remove_stale_temps(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, _dir_mode(tmp))
        yield tmp
        old = None
        if path.exists():
            old = path.parent / f"{_temp_prefix(path.name)}old{os.urandom(4).hex()}.tmp"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike, ignore: Callable | None = None) -> None:
    """`cp -r` without `-p`: new files and directories get the umask's modes, not the source's
    (shutil.copytree copies the checkout's modes, so a snapshot under umask 002 was not group-writable).
    An executable source file stays executable."""
    u = umask()
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        out = os.path.join(dst, rel) if rel != "." else os.fspath(dst)
        os.makedirs(out, exist_ok=True)
        skip = ignore(root, dirs + files) if ignore else set()
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            if name in skip:
                continue
            s, d = os.path.join(root, name), os.path.join(out, name)
            shutil.copyfile(s, d)
            os.chmod(d, (0o777 if os.stat(s).st_mode & stat.S_IXUSR else 0o666) & ~u)


# errno values that mean "the filesystem refused", not "alignkit has a bug": the CLI turns them into
# one line naming the path (alignkit/cli/main.py)
FS_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                       errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE,
                       errno.ESTALE, errno.ELOOP})


def describe_os_error(exc: OSError) -> str:
    """`PATH: No space left on device (ENOSPC)`: one line for a failed filesystem call."""
    if exc.filename is None:
        return f"a filesystem operation failed: {exc.strerror or exc}"
    where = exc.filename
    if exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    code = errno.errorcode.get(exc.errno or 0, "")
    return f"{where}: {exc.strerror or exc}" + (f" ({code})" if code else "")
