"""Verified, atomic, resumable and process-safe downloads of one file.

`keras.utils.get_file` (keras/src/utils/file_utils.py) downloads straight
to the final path with `urlretrieve`, deletes it on failure (no resume),
leaves a file whose hash does not match where it is, silently falls back to
`/tmp` when the cache is not writable, and takes no lock, so two processes
fetching one file can read each other's half-written bytes. This module
keeps Keras's `Progbar` for progress (imported only when a download shows
one), hashes with `hashlib.file_digest` (what Keras's `hash_file` does,
without importing TensorFlow into every fetching process) and adds what
`get_file` lacks:

- a lock per target (`filelock`, cross-platform), so concurrent fetches
  download once and the others reuse the result;
- a `<target>.part` file, resumed with an HTTP `Range: bytes=N-` request
  when the server answers 206 (restarted from zero when it answers 200);
- sha256 and size verification before an atomic `os.replace` to the target;
  a file that fails the check is deleted and never returned.
"""

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

import filelock

CHUNK = 1 << 16


class ChecksumError(ValueError):
    """A file whose sha256 differs from the manifest's (it has been deleted)."""


class DownloadError(ValueError):
    """A server that cannot be reached or a download that stays incomplete."""


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


def _copy(url: str, part: Path, size: int, timeout: float, progress: bool) -> None:
    """Appends the missing bytes of `url` to `part` (one HTTP request)."""
    start = part.stat().st_size if part.exists() else 0
    if start >= size:  # a stale or over-long partial file: start again
        part.unlink()
        start = 0
    with _request(url, start, timeout) as response:
        mode = "ab"
        if start and response.status != 206:  # ranges not supported: restart
            start, mode = 0, "wb"
        elif start:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise DownloadError(
                    f"{url} answered a range request for bytes {start}- with "
                    f"Content-Range {content_range!r}."
                )
        bar = None
        if progress:
            from keras.utils import Progbar

            bar = Progbar(size, unit_name="B")
        done = start
        with open(part, mode) as f:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if bar is not None:
                    bar.update(min(done, size))
            f.flush()
            os.fsync(f.fileno())


def download(
    url: str,
    target,
    sha256: str,
    size: int,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
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
        size: Expected size in bytes.
        retries: Requests to try before giving up on an incomplete download.
        timeout: Socket timeout in seconds.
        progress: Show a progress bar.

    Returns:
        `target` as a `Path`.

    Raises:
        DownloadError: The server is unreachable or the file stays short
            (`<target>.part` is kept for the next call to resume).
        ChecksumError: The complete file has another sha256 (it is deleted).
    """
    if retries < 1:
        raise ValueError(f"`retries` must be >= 1; received {retries}.")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with filelock.FileLock(str(target) + ".lock"):
        if target.exists():
            try:
                verify(target, sha256)
                return target
            except ChecksumError:
                pass  # deleted; download again
        last_error = None
        for _ in range(retries):
            try:
                _copy(url, part, size, timeout, progress)
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
            if part.exists() and part.stat().st_size >= size:
                break
        have = part.stat().st_size if part.exists() else 0
        if have != size:
            if have > size:
                part.unlink()
            raise DownloadError(
                f"Incomplete download of {url}: {have} of {size} bytes"
                + (f" ({last_error})" if last_error else "")
                + ". Run the fetch again to resume."
            )
        verify(part, sha256)
        os.replace(part, target)
    return target
