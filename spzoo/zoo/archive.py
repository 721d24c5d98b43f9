"""A SavedModel directory as one archive file: deterministic writing, safe extraction.

The zoo ships a SavedModel (a directory) as one `.zip` or `.tar.gz` file,
hashed like the other formats, and `spzoo.zoo.fetch` extracts it into the
cache. `keras.utils.get_file(extract=True)` (keras/src/utils/file_utils.py)
extracts with `extract_archive` straight into the final folder on every
call, so a crash or a second process sees a half-written folder, and it
skips unsafe members with a warning rather than refusing the archive; it
also imports TensorFlow into every fetching process. Its safety rule (a
member must resolve inside the target) is kept here, made strict:

- `write_archive(directory, path)`: members sorted, fixed time stamps (zip:
  1980-01-01, tar and gzip: 0), fixed modes (0o644 files, 0o755 folders),
  no owner names, so the same files give the same bytes (and sha256); the
  archive is written to a temporary file and renamed into place.
- `extract_archive(path, target, sha256)`: refuses the whole archive
  (`ArchiveError` naming the member) when a member has an absolute path, a
  `..` part, or is not a regular file or folder (links, devices); extracts
  into a temporary sibling of `target`, writes the listing
  `.spzoo-archive.json` (the archive's sha256 and every file's size and
  sha256) and puts the folder in place of `target` by renames
  (`spzoo.io.replace_dir`). The caller holds the file lock.
- `is_extracted(target, sha256)`: the listing names this archive, every
  file is there with its size and sha256, and no other file is (else
  extract again: a same-size edit or a flipped byte is found and repaired).
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from spzoo.io import (
    atomic_path,
    atomic_write_text,
    remove_stale,
    replace_dir,
    temp_path,
)

ARCHIVE_SUFFIXES = (".zip", ".tar.gz")
LISTING = ".spzoo-archive.json"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_DRIVE = re.compile(r"^[A-Za-z]:")


class ArchiveError(ValueError):
    """An archive with an unsafe member, or one that is not a zip/tar.gz."""

    exit_code = 1  # a runtime error for the CLI


def archive_kind(path) -> str:
    """`"zip"` or `"tar.gz"` from the file name; `ArchiveError` otherwise."""
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return suffix[1:]
    raise ArchiveError(
        f"Archive {str(path)!r}: expected a name ending in "
        f"{' or '.join(ARCHIVE_SUFFIXES)}."
    )


def extracted_name(path) -> str:
    """The folder an archive extracts to: `x.savedmodel.zip` -> `x.savedmodel`."""
    name = Path(path).name
    return name[: -len(archive_kind(path)) - 1]


def _files(directory: Path) -> list[tuple[str, Path]]:
    """`(posix relative name, path)` of every file and folder, sorted."""
    entries = []
    for path in directory.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ArchiveError(f"{str(path)!r} is not a regular file or folder.")
        entries.append((path.relative_to(directory).as_posix(), path))
    return sorted(entries)


def write_archive(directory, path) -> Path:
    """Writes the folder `directory` as the deterministic archive `path`.

    Args:
        directory: The folder (e.g. a SavedModel); its contents become the
            archive's top level.
        path: The archive, `.zip` or `.tar.gz` (written through a temporary
            file in the same folder).

    Returns:
        `path` as a `Path`.
    """
    directory, path = Path(directory), Path(path)
    if not directory.is_dir():
        raise ArchiveError(f"`directory` {str(directory)!r} is not a folder.")
    kind = archive_kind(path)
    entries = _files(directory)
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        if kind == "zip":
            _write_zip(raw, entries)
        else:
            _write_tar_gz(raw, entries)
    return path


def _write_zip(raw, entries) -> None:
    with zipfile.ZipFile(raw, "w") as archive:
        for name, source in entries:
            is_dir = source.is_dir()
            info = zipfile.ZipInfo(name + "/" if is_dir else name, ZIP_EPOCH)
            info.create_system = 3  # unix, so the modes below are read back
            if is_dir:
                info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | 0x10
                archive.writestr(info, b"")
                continue
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(source, "rb") as f, archive.open(info, "w") as out:
                shutil.copyfileobj(f, out, 1 << 20)


def _write_tar_gz(raw, entries) -> None:
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name, source in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if source.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.mode, info.size = 0o644, source.stat().st_size
            with open(source, "rb") as f:
                tar.addfile(info, f)


def _safe_name(name: str, where: str) -> PurePosixPath:
    """The member name as a relative path, or `ArchiveError`."""
    relative = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or relative.is_absolute()
        or _DRIVE.match(name)
        or ".." in relative.parts
    ):
        raise ArchiveError(
            f"Archive {where} has the unsafe member {name!r} (an absolute path or "
            "a '..' part); refusing to extract it."
        )
    return relative


def _members(archive, kind: str, where: str) -> list:
    """`(relative path, is_dir, member)` of every member, all checked first."""
    members = []
    if kind == "zip":
        for info in archive.infolist():
            relative = _safe_name(info.filename, where)
            mode = info.external_attr >> 16
            if info.create_system == 3 and mode and stat.S_ISLNK(mode):
                raise ArchiveError(
                    f"Archive {where} has the link {info.filename!r}; refusing to "
                    "extract it."
                )
            members.append((relative, info.is_dir(), info))
        return members
    for info in archive.getmembers():
        relative = _safe_name(info.name, where)
        if not (info.isfile() or info.isdir()):
            raise ArchiveError(
                f"Archive {where} has the member {info.name!r}, which is not a "
                "regular file or folder (a link or device); refusing to extract it."
            )
        members.append((relative, info.isdir(), info))
    return members


def _open(path: Path, kind: str):
    try:
        if kind == "zip":
            return zipfile.ZipFile(path)
        return tarfile.open(path, "r:gz")
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        raise ArchiveError(
            f"Archive {str(path)!r} is not a readable {kind} file: {error}"
        ) from None


def _read(path: Path) -> dict | None:
    try:
        return json.loads((path / LISTING).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_extracted(target, sha256: str) -> bool:
    """Whether `target` holds exactly the files of the archive `sha256`.

    Every file of the listing must be there with its size and sha256, and
    no other file (a listing without hashes, from an older spzoo, is not
    trusted: the archive is extracted again).
    """
    target = Path(target)
    listing = _read(target)
    if not listing or listing.get("archive_sha256") != sha256:
        return False
    files = listing.get("files")
    if not isinstance(files, dict):
        return False
    try:
        present = {
            p.relative_to(target).as_posix()
            for p in target.rglob("*")
            if not p.is_dir() or p.is_symlink()
        }
    except OSError:
        return False
    if present != set(files) | {LISTING}:
        return False
    for name, record in files.items():
        path = target / name
        if (
            not isinstance(record, dict)
            or path.is_symlink()
            or not path.is_file()
            or path.stat().st_size != record.get("size")
            or _digest(path) != record.get("sha256")
        ):
            return False
    return True


def extract_archive(path, target, sha256: str) -> Path:
    """Extracts the archive `path` (whose sha256 is `sha256`) to `target`.

    Every member is checked before anything is written. The files go to a
    temporary folder next to `target`, which replaces `target` (an older or
    incomplete extraction) by a rename. Hold a lock around the call when
    other processes may extract to the same `target`.

    Args:
        path: A `.zip` or `.tar.gz` archive.
        target: The folder to create.
        sha256: The archive's sha256, recorded in the listing
            (`is_extracted`).

    Returns:
        `target` as a `Path`.

    Raises:
        ArchiveError: An unsafe member (absolute path, `..`, link, device)
            or an unreadable archive; nothing is left behind.
    """
    path, target = Path(path), Path(target)
    kind = archive_kind(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)  # what a killed extraction left
    staging = temp_path(target)
    staging.mkdir()
    try:
        root = staging.resolve()
        files = {}
        with _open(path, kind) as archive:
            for relative, is_dir, member in _members(archive, kind, repr(str(path))):
                destination = staging.joinpath(*relative.parts)
                if not destination.resolve().is_relative_to(root):
                    raise ArchiveError(
                        f"Archive {str(path)!r}: member {str(relative)!r} resolves "
                        "outside the target folder; refusing to extract it."
                    )
                if is_dir:
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = (
                    archive.open(member)
                    if kind == "zip"
                    else archive.extractfile(member)
                )
                digest = hashlib.sha256()
                with source, open(destination, "wb") as out:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                files[relative.as_posix()] = {
                    "size": destination.stat().st_size,
                    "sha256": digest.hexdigest(),
                }
        listing = {"archive": path.name, "archive_sha256": sha256, "files": files}
        atomic_write_text(
            staging / LISTING, json.dumps(listing, indent=1, sort_keys=True)
        )
        replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
