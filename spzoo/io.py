"""Atomic writes and checked reads: the one place spzoo writes files from.

A kill (SIGKILL, power loss, a full disk) in the middle of a write must
never leave a truncated file where a reader looks. Every writer in spzoo
(training, searches, exports, the zoo, the bench scripts) goes through this
module:

- `atomic_write_bytes` / `atomic_write_text` / `atomic_write_json`: the
  data go to a temporary file in the target's folder, are flushed and
  fsync'ed, then renamed over the target (`os.replace`, atomic on POSIX and
  Windows) and the folder is fsync'ed, so readers see the old file or the
  new one, never a mix;
- `atomic_path(path)`: the same for writers that want a path (Keras
  `model.save`, `save_weights`, `np.savez`, `savefig`, a SavedModel
  folder): yields a temporary path that ends with the target's name (so
  `.keras`, `.weights.h5` and `.npz` checks pass) and renames it into place
  when the block ends without an error;
- `replace_dir(source, target)`: a complete folder replaces another one by
  renames (the old one is moved aside first, deleted last);
- `read_json(path)`: a file that is not valid JSON raises `CorruptFileError`
  naming the file (not JSON's bare "Unterminated string ...").

Temporary names are `.tmp-<pid>-<random>.<name>`; `remove_stale` deletes
those a killed process left behind (its pid gone and the file older than a
minute), and every atomic write calls it on the target's folder.
"""

import contextlib
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path

TEMP_PREFIX = ".tmp-"
_TEMP = re.compile(r"\.tmp-(\d+)-[0-9a-f]+\.")
STALE_SECONDS = 60.0


class CorruptFileError(ValueError):
    """A file that exists but cannot be parsed (truncated, edited, garbage)."""

    exit_code = 1  # a runtime error for the CLI, not a usage error


def temp_path(path) -> Path:
    """A fresh temporary sibling of `path` that ends with its name."""
    path = Path(path)
    token = secrets.token_hex(4)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{token}.{path.name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale(folder) -> list[Path]:
    """Deletes temporaries a killed writer left in `folder`; returns them.

    A temporary is stale when the process named in it is gone and it has not
    changed for `STALE_SECONDS` (a writer on another machine sharing the
    folder keeps touching its file).
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        match = _TEMP.match(name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        path = Path(folder) / name
        try:
            if now - path.lstat().st_mtime < STALE_SECONDS or _alive(
                int(match.group(1))
            ):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def fsync_dir(folder) -> None:
    """Makes a rename in `folder` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for item in sorted(path.rglob("*")):
            if item.is_file() and not item.is_symlink():
                with open(item, "rb") as f:
                    os.fsync(f.fileno())
        return
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write_bytes(path, data: bytes) -> Path:
    """Writes `data` to `path` atomically (temporary file, fsync, rename).

    The file gets the usual permissions (0o666 minus the umask), not the
    0o600 of `tempfile.mkstemp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Writes `text` to `path` atomically (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path, obj, **dumps_kwargs) -> Path:
    """Writes `json.dumps(obj, **dumps_kwargs)` to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs))


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; renames it to `path` at the end.

    The temporary path is a sibling of `path` whose name ends with
    `path`'s name. When the block ends without an error, what was written
    there (a file or a folder) is fsync'ed and renamed to `path` (a folder
    through `replace_dir`); on an error it is deleted and `path` is left
    as it was.

    Example:
        with atomic_path("runs/m.keras") as tmp:
            model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    tmp = temp_path(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"Nothing was written to {str(tmp)!r}.")
        _fsync_tree(tmp)
        if tmp.is_dir():
            replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
            fsync_dir(path.parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def replace_dir(source, target) -> Path:
    """Moves the complete folder `source` to `target`, replacing it.

    `target` (when it exists) is first renamed aside, then `source` renamed
    to `target`, then the old folder deleted: at every instant `target` is
    either the old folder or the new one, except between the two renames,
    when the old one waits under a `.tmp-` name (deleted as stale later).
    Both must be on one file system (make `source` a sibling of `target`).
    """
    source, target = Path(source), Path(target)
    aside = None
    if target.exists() or target.is_symlink():
        aside = temp_path(target)
        os.replace(target, aside)
    try:
        os.replace(source, target)
    except BaseException:
        if aside is not None:
            os.replace(aside, target)
        raise
    fsync_dir(target.parent)
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
    return target


def read_json(path, what: str = "file"):
    """Parses the JSON file `path`; `CorruptFileError` names it when it cannot.

    Args:
        path: The file.
        what: What the file is, for the message (e.g. "search state").

    Raises:
        FileNotFoundError: `path` does not exist.
        CorruptFileError: The file is not UTF-8 JSON (truncated or edited).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        detail = (
            f"{error.msg} at line {error.lineno} column {error.colno}"
            if isinstance(error, json.JSONDecodeError)
            else "not UTF-8 text"
        )
        raise CorruptFileError(
            f"The {what} {str(path)!r} is not valid JSON ({detail}; {len(data)} "
            "bytes): it was truncated or edited."
        ) from None


__all__ = [
    "CorruptFileError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "read_json",
    "remove_stale",
    "replace_dir",
    "temp_path",
]
