"""Downloads that resume and verify, and archive extraction that stays inside its target.

:func:`download` fetches a URL to a file:

- a partial download lives beside the target as ``NAME.part``; a rerun (or a retry after a dropped
  connection) asks the server for the rest with an HTTP ``Range`` request and appends it. A server
  that ignores ranges (200 instead of 206) is read again from the start.
- the finished file is checked against the MD5 or SHA-256 the publisher gives (a mismatch is an
  error, and the bad file is moved aside to ``NAME.bad`` so the next run starts afresh), then
  renamed into place. A file already in place is checked once; the result is kept in
  ``NAME.verified`` (digest, size, mtime), so later runs neither hash nor download it again.
- progress is a tqdm bar in bytes.

:func:`extract` unpacks a tar archive (plain, gz, bz2, xz) into a folder with one pass over the
archive. It refuses, naming the archive and the member, any member that could land outside the
folder or is not a plain file or folder: absolute names, ``..`` components, symbolic and hard
links, devices, FIFOs. A marker file records a finished extraction so reruns skip it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from myna.archive import UnsafeArchiveError, safe_member_name, safe_target

__all__ = ["DownloadError", "UnsafeArchiveError", "download", "extract", "file_digest"]

logger = logging.getLogger("myna.data")

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed (HTTP error, too many dropped connections, or a checksum mismatch)."""



def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file (``md5``, ``sha256``, ...), read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _expected(md5: str | None, sha256: str | None) -> tuple[str, str] | None:
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None


def _verify(path: Path, expected: tuple[str, str] | None, url: str) -> None:
    """Check ``path`` against ``expected`` (cached in ``path.verified``); raise on mismatch."""
    stamp = path.with_name(path.name + ".verified")
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if expected is None:
        return
    algorithm, want = expected
    record[algorithm] = want
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == record:
                return
        except ValueError:
            pass
    logger.info("checking %s of %s", algorithm, path)
    got = file_digest(path, algorithm)
    if got != want:
        bad = path.with_name(path.name + ".bad")
        os.replace(path, bad)
        raise DownloadError(f"{algorithm} mismatch for {path.name} from {url}: expected {want}, "
                            f"got {got}; the file was moved to {bad} (rerun to download it again)")
    stamp.write_text(json.dumps(record))


def download(url: str, dest: str | os.PathLike, md5: str | None = None, sha256: str | None = None,
             retries: int = 3, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    Args:
        url: http(s) (or file) URL.
        dest: target file; its folder is created.
        md5, sha256: the published checksum (SHA-256 wins when both are given); None: no check.
        retries: how many times a dropped connection is resumed within this call.
        timeout: socket timeout, seconds.
        progress: show a tqdm bar.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: an HTTP error, a connection that keeps dropping, or a checksum mismatch
            (message names the file, the URL, both digests).
    """
    dest = Path(dest)
    expected = _expected(md5, sha256)
    if dest.is_file():
        _verify(dest, expected, url)
        logger.info("%s is there%s; not downloading it", dest, " and verified" if expected else "")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _fetch(url, part, timeout, progress)
            break
        except (urllib.error.URLError, OSError, http.client.HTTPException, DownloadError) as err:
            if isinstance(err, urllib.error.HTTPError) or attempt >= retries:
                have = part.stat().st_size if part.is_file() else 0
                raise DownloadError(f"download of {url} failed: {err} ({have} bytes kept in "
                                    f"{part}; rerun to resume)") from None
            attempt += 1
            logger.warning("download of %s interrupted (%s); resuming (%d/%d)", url, err, attempt,
                           retries)
            time.sleep(min(2.0 ** attempt, 30.0) * 0.1)
    os.replace(part, dest)
    _verify(dest, expected, url)
    return dest


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (a Range request when it has bytes)."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "myna-data-prepare"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            # Range starts at the end: the partial file is complete if the server says so.
            total = err.headers.get("Content-Range", "").rpartition("/")[2]
            if total.isdigit() and int(total) == have:
                return
            part.unlink()
            raise DownloadError(f"server refused to resume at byte {have}; restarting") from None
        raise
    with response:
        status = getattr(response, "status", 200)
        if have and status != 206:
            logger.info("%s: server ignored the range request; downloading from the start", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with open(part, "ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name[:-5], disable=not progress) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        got = part.stat().st_size
    if total is not None and got < total:
        raise DownloadError(f"connection closed at byte {got} of {total}")


def extract(archive: str | os.PathLike, target: str | os.PathLike, progress: bool = True) -> Path:
    """Unpack tar ``archive`` into ``target`` safely; skip it when a previous run finished.

    Every member is checked before it is written (see the module docstring); files are written
    with mode 0644/0755 at most (no set-uid bits), owned by the current user.

    Returns:
        ``target`` as a Path.

    Raises:
        UnsafeArchiveError: a member that is a link, a special file, absolute or with ``..``;
            members before it in the archive have been written (all inside ``target``).
        ValueError: the archive is not a readable tar file.
    """
    archive, target = Path(archive), Path(target)
    marker = target / f".extracted-{archive.name}"
    stat = archive.stat()
    stamp = json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    if marker.is_file() and marker.read_text() == stamp:
        logger.info("%s already extracted into %s", archive.name, target)
        return target
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError as err:
        raise ValueError(f"{archive}: not a readable tar archive: {err}") from None
    raw = tar.fileobj
    with tar, tqdm(total=stat.st_size, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=f"extract {archive.name}", disable=not progress) as bar:
        for member in tar:
            name = safe_member_name(member, archive, allow_dirs=True)
            if name:  # "." itself is the target
                safe_target(root, name, archive)
            member.mode = (member.mode & 0o755) | (0o755 if member.isdir() else 0o644)
            member.uid = member.gid = os.getuid() if hasattr(os, "getuid") else 0
            member.uname = member.gname = ""
            tar.extract(member, root, set_attrs=member.isfile(), **_no_filter())
            position = _compressed_position(raw)
            if position is not None:
                bar.n = min(position, stat.st_size)
                bar.refresh()
    marker.write_text(stamp)
    return target


def _no_filter() -> dict:
    # Members were checked above; Python >= 3.12 wants an explicit filter choice.
    return {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}


def _compressed_position(fileobj) -> int | None:
    """Bytes of the archive file read so far (through a gzip/bz2/lzma wrapper)."""
    inner = getattr(fileobj, "fileobj", None) or getattr(fileobj, "_fp", None) or fileobj
    try:
        return inner.tell()
    except (AttributeError, OSError, ValueError):
        return None
