"""Verified, atomic, resumable, bounded and process-safe downloads of one file.

`keras.utils.get_file` (keras/src/utils/file_utils.py) downloads straight
to the final path with `urlretrieve`, deletes it on failure (no resume),
leaves a file whose hash does not match where it is, silently falls back to
`/tmp` when the cache is not writable, and takes no lock, so two processes
fetching one file can read each other's half-written bytes. This module
keeps Keras's `Progbar` for progress (on stderr, imported only when a
download shows one), hashes with `hashlib.file_digest` (what Keras's
`hash_file` does, without importing TensorFlow into every fetching process)
and adds what `get_file` lacks:

- a lock per target (`filelock`, cross-platform), so concurrent fetches
  download once and the others reuse the result; a fetch that has to wait
  says so on stderr and gives up after `lock_timeout` seconds;
- a `<target>.part` file, resumed with an HTTP `Range: bytes=N-` request
  when the server answers 206 (restarted from zero when it answers 200, or
  a `Content-Range` that does not start at N);
- bounds: never more bytes than the manifest's size (a server that sends
  more is refused and the partial file deleted), and an overall deadline
  (`deadline` seconds, default 60 s plus 50 us per byte, i.e. 20 kB/s on
  average; `$SPZOO_DOWNLOAD_DEADLINE`), after which the partial file is
  kept for the next call to resume;
- sha256 and size verification before an atomic `os.replace` to the target;
  a file that fails the check is deleted and never returned (a resumed
  partial file that fails is downloaded once more from zero).
"""

import contextlib
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import filelock

CHUNK = 1 << 16
DEADLINE_ENV = "SPZOO_DOWNLOAD_DEADLINE"


class ChecksumError(ValueError):
    """A file whose sha256 differs from the manifest's (it has been deleted)."""

    exit_code = 1  # a runtime error for the CLI


class DownloadError(ValueError):
    """A server that cannot be reached or a download that stays incomplete."""

    exit_code = 1


class _Restart(Exception):
    """The partial file cannot be resumed: start again from zero."""


def default_deadline(size: int) -> float:
    """Seconds a download of `size` bytes may take: `$SPZOO_DOWNLOAD_DEADLINE`,
    else 60 s plus 50 us per byte (20 kB/s on average)."""
    text = os.environ.get(DEADLINE_ENV)
    if text:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0:
            raise ValueError(
                f"${DEADLINE_ENV} must be a positive number of seconds; "
                f"received {text!r}."
            )
        return value
    return 60.0 + size / 20_000


def sha256_file(path) -> str:
    """The sha256 hex digest of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(path, sha256: str, delete: bool = True) -> None:
    """Raises `ChecksumError` (deleting `path` when `delete`) on a mismatch."""
    actual = sha256_file(path)
    if actual != sha256:
        if delete:
            Path(path).unlink(missing_ok=True)
        raise ChecksumError(
            f"Checksum mismatch for {str(path)!r}: expected sha256 {sha256}, got "
            f"{actual}." + (" The file was deleted." if delete else "")
        )


def _request(url: str, start: int, timeout: float):
    request = urllib.request.Request(url)
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _progress_bar(size: int):
    from keras.utils import Progbar  # Keras: only when a download starts

    with contextlib.redirect_stdout(sys.stderr):  # stdout stays the result
        bar = Progbar(size, unit_name="B")

    def update(done):
        with contextlib.redirect_stdout(sys.stderr):
            bar.update(min(done, size))

    return update


def _copy(
    url: str, part: Path, size: int, timeout: float, progress: bool, end: float
) -> int:
    """Appends the missing bytes of `url` to `part` (one HTTP request).

    Returns the offset it resumed from (0: a fresh download). Raises
    `_Restart` when the partial file cannot be resumed, `DownloadError` when
    the server sends more than `size` bytes (the partial file is deleted)
    or the deadline `end` (a `time.monotonic()` value) passes.
    """
    start = part.stat().st_size if part.exists() else 0
    if start >= size:  # a stale or over-long partial file: start again
        part.unlink()
        start = 0
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise DownloadError(f"Download of {url} ran out of time.")
    with _request(url, start, min(timeout, remaining)) as response:
        mode = "ab"
        if start and response.status != 206:  # ranges not supported: restart
            start, mode = 0, "wb"
        elif start:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise _Restart(
                    f"a range request for bytes {start}- was answered with "
                    f"Content-Range {content_range!r}"
                )
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and start + int(length) > size:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url} sends {start + int(length)} bytes; the manifest's file has "
                f"{size}. The server holds another file: nothing was kept."
            )
        update = _progress_bar(size) if progress else None
        read = getattr(response, "read1", response.read)
        done = start
        with open(part, mode) as f:
            while True:
                chunk = read(CHUNK)
                if not chunk:
                    break
                if done + len(chunk) > size:
                    f.close()
                    part.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{url} sent more than the manifest's {size} bytes; the "
                        "download was stopped and the partial file deleted."
                    )
                f.write(chunk)
                done += len(chunk)
                if update is not None:
                    update(done)
                if time.monotonic() > end:
                    f.flush()
                    os.fsync(f.fileno())
                    raise DownloadError(
                        f"Download of {url} ran out of time: {done} of {size} "
                        "bytes. Run the fetch again to resume (or raise "
                        f"${DEADLINE_ENV}, in seconds)."
                    )
            f.flush()
            os.fsync(f.fileno())
    return start


def lock_file(target, timeout: float, doing: str = "downloading"):
    """`<target>.lock`, acquired (release it); says so on stderr when it has
    to wait, and raises `DownloadError` after `timeout` seconds."""
    target = Path(target)
    lock = filelock.FileLock(str(target) + ".lock")
    try:
        lock.acquire(timeout=0.2)
        return lock
    except filelock.Timeout:
        pass
    print(
        f"spzoo: waiting for another process {doing} {target.name} (lock "
        f"{lock.lock_file}, up to {timeout:g} s)...",
        file=sys.stderr,
        flush=True,
    )
    try:
        lock.acquire(timeout=timeout)
    except filelock.Timeout:
        raise DownloadError(
            f"Gave up after {timeout:g} s waiting for another process "
            f"{doing} {str(target)!r} (it holds {lock.lock_file}). Run again "
            "once it has finished."
        ) from None
    return lock


def download(
    url: str,
    target,
    sha256: str,
    size: int,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
    deadline: float | None = None,
    lock_timeout: float | None = None,
) -> Path:
    """Downloads `url` to `target`, verified against `sha256` and `size`.

    Holds `<target>.lock` while downloading; if another process finished the
    file meanwhile, returns it without downloading. Bytes go to
    `<target>.part`, which later calls resume with a Range request; the
    target appears (by `os.replace`) only once its size and sha256 match.

    Args:
        url: HTTP(S) or file URL.
        target: Final path.
        sha256: Expected sha256 hex digest.
        size: Expected size in bytes: more is never written.
        retries: Requests to try before giving up on an incomplete download.
        timeout: Socket timeout in seconds (per read).
        progress: Show a progress bar (on stderr).
        deadline: Seconds the whole download may take (default
            `default_deadline(size)`).
        lock_timeout: Seconds to wait for another process's download of
            the same file (default: `deadline` plus a minute).

    Returns:
        `target` as a `Path`.

    Raises:
        DownloadError: The server is unreachable, sends more than `size`
            bytes, or the file stays short (`<target>.part` is kept for the
            next call to resume) or takes longer than `deadline`.
        ChecksumError: The complete file has another sha256 (it is deleted).
    """
    if retries < 1:
        raise ValueError(f"`retries` must be >= 1; received {retries}.")
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"`size` must be an int >= 0; received {size!r}.")
    deadline = default_deadline(size) if deadline is None else float(deadline)
    if not deadline > 0:
        raise ValueError(f"`deadline` must be > 0 seconds; received {deadline!r}.")
    lock_timeout = deadline + 60.0 if lock_timeout is None else float(lock_timeout)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    lock = lock_file(target, lock_timeout)
    try:
        if target.exists():
            try:
                verify(target, sha256)
                return target
            except ChecksumError:
                pass  # deleted; download again
        end = time.monotonic() + deadline
        last_error, resumed = None, False
        for attempt in range(retries):
            try:
                resumed = _copy(url, part, size, timeout, progress, end) > 0
            except _Restart as error:
                part.unlink(missing_ok=True)
                last_error = error
                continue
            except urllib.error.HTTPError as error:
                if error.code == 416 and part.exists():  # range past the end
                    part.unlink()
                    continue
                raise DownloadError(
                    f"Cannot download {url}: HTTP {error.code} {error.reason}."
                ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                last_error = error
                if isinstance(error, urllib.error.URLError) and not part.exists():
                    reason = getattr(error, "reason", error)
                    raise DownloadError(
                        f"Cannot reach {url}: {reason}. Set SPZOO_ZOO_URL (or pass "
                        "`base_url=`) to a mirror, or put the file in the cache."
                    ) from None
                continue
            if part.exists() and part.stat().st_size == size:
                try:
                    verify(part, sha256)  # deletes a bad file
                except ChecksumError:
                    if resumed and attempt + 1 < retries:
                        continue  # bytes of another file before: once from zero
                    raise
                os.replace(part, target)
                return target
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"Incomplete download of {url}: {have} of {size} bytes"
            + (f" ({last_error})" if last_error else "")
            + ". Run the fetch again to resume."
        )
    finally:
        lock.release()
