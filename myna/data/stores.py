"""Data in object stores: ``ais://``, ``s3://``, ``gs://`` and ``http(s)://`` URLs.

Manifests, tar shards, audio files and text files may live in an object store. This module is the
one place that opens such URLs:

- :func:`is_url` says whether a path is a URL (NeMo's rule: a scheme and a host; ``file://`` is
  local);
- :func:`open_stream` opens an object for sequential reading (tar shards stream through it and are
  never cached) and resumes an interrupted read where it stopped;
- :func:`fetch` copies an object into the local cache (once; later calls return the cached file)
  and :func:`read_bytes` reads a whole object;
- :func:`cache_remote_data` caches manifests (and, for non-tarred data, every audio file they name)
  on one rank while the others wait at a barrier, as NeMo does for data on AIStore.

Backends, all optional extras (``pip install myna[stores]``): the ``aistore`` SDK for ``ais://``
(endpoint from ``AIS_ENDPOINT``, as NeMo); fsspec with ``s3fs`` for ``s3://`` (credentials the
usual AWS way; a custom endpoint from ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``); ``gcsfs``
for ``gs://``; plain HTTP GETs (with ``Range`` to resume) for ``http(s)://``, no extra needed.

Every read is retried ``MYNA_DATA_STORE_RETRIES`` times (default 5) with doubling waits from
``MYNA_DATA_STORE_RETRY_DELAY`` seconds (default 0.5); then :class:`StoreError` names the URL.
A missing object is not retried.

Cache layout (``<root>`` from ``MYNA_DATA_STORE_CACHE_DIR``, else NeMo's
``NEMO_DATA_STORE_CACHE_DIR``, else ``~/.cache/myna``; ``ais`` is NeMo's own layout, so a NeMo
cache is reused as it is)::

    <root>/ais/<endpoint host>/<endpoint port>/<bucket>/<object>
    <root>/s3/<bucket>/<key>                      (s3 with a custom endpoint:
    <root>/s3/<endpoint host>/<endpoint port>/<bucket>/<key>)
    <root>/gs/<bucket>/<object>
    <root>/http/<host>/<port>/<path>             (https too; the query string is not part of it)

>>> is_url("s3://bucket/train.json"), is_url("/data/train.json")
(True, False)
>>> local = fetch("s3://bucket/train.json")      # cached copy, downloaded once
>>> with open_stream("ais://shards/audio_0.tar") as f:
...     tar = tarfile.open(fileobj=f, mode="r|*")
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

__all__ = [
    "StoreError",
    "RankInfo",
    "is_url",
    "join_url",
    "url_dirname",
    "resolve_against",
    "cache_root",
    "cache_is_shared",
    "cache_path",
    "fetch",
    "read_bytes",
    "open_stream",
    "localize",
    "cache_remote_data",
]

logger = logging.getLogger("myna.data")

_FSSPEC_SCHEMES = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs"}
_AUDIO_KEYS = ("audio_filepath", "audio_file", "audio_filename")  # as myna.data.manifest
_CHUNK = 1 << 20


class StoreError(OSError, ValueError):
    """An object could not be read from its store (missing, refused, or still failing after the
    retries). The message names the URL. A ValueError too, so the CLI prints it as one line."""


# ----------------------------------------------------------------------------- URLs


def is_url(path: Any) -> bool:
    """Whether ``path`` names an object in a store: a string with a scheme and a host (NeMo's
    ``is_datastore_path``); ``file://`` URLs and Windows drive letters are local paths."""
    if not isinstance(path, str) or "://" not in path:
        return False
    parts = urlsplit(path)
    return bool(parts.scheme) and bool(parts.netloc) and parts.scheme != "file"


def url_dirname(url: str) -> str:
    """The "folder" of an object URL: ``s3://b/dir/train.json`` -> ``s3://b/dir``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{posixpath.dirname(parts.path)}"


def join_url(base: str, relative: str) -> str:
    """``relative`` (a POSIX path, ``..`` allowed inside the bucket) below the URL folder ``base``.

    Raises:
        StoreError: the result would leave the bucket (or host root).
    """
    parts = urlsplit(base)
    segments: list[str] = []
    for segment in (parts.path + "/" + relative).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not segments:
                raise StoreError(f"{relative!r} leaves the bucket of {base}")
            segments.pop()
        else:
            segments.append(segment)
    return f"{parts.scheme}://{parts.netloc}/" + "/".join(segments)


def resolve_against(path: str, manifest: str) -> str:
    """An audio path of a manifest as a readable location: URLs and absolute paths stay as they
    are; a relative path joins the manifest's folder (the remote folder for a manifest URL)."""
    if is_url(path) or os.path.isabs(os.path.expanduser(path)):
        return os.path.expanduser(path) if not is_url(path) else path
    if is_url(manifest):
        return join_url(url_dirname(manifest), path)
    return str(Path(manifest).resolve().parent / path)


# ----------------------------------------------------------------------------- cache


def cache_root() -> Path:
    """The cache folder: ``MYNA_DATA_STORE_CACHE_DIR``, else ``NEMO_DATA_STORE_CACHE_DIR``, else
    ``~/.cache/myna``."""
    for var in ("MYNA_DATA_STORE_CACHE_DIR", "NEMO_DATA_STORE_CACHE_DIR"):
        value = os.environ.get(var, "")
        if value:
            return Path(os.path.expanduser(value)).resolve()
    return Path.home() / ".cache" / "myna"


def cache_is_shared() -> bool:
    """Whether every node sees the same cache folder (``MYNA_DATA_STORE_CACHE_SHARED`` or NeMo's
    ``NEMO_DATA_STORE_CACHE_SHARED``: 1, the default, or 0). Shared: global rank 0 downloads;
    not shared: local rank 0 of each node does."""
    for var in ("MYNA_DATA_STORE_CACHE_SHARED", "NEMO_DATA_STORE_CACHE_SHARED"):
        value = os.environ.get(var, "").strip()
        if value:
            if value not in ("0", "1"):
                raise ValueError(f"{var} must be 0 or 1, got {value!r}")
            return value == "1"
    return True


def cache_path(url: str) -> Path:
    """Where :func:`fetch` keeps the object ``url`` (see the module docstring for the layout).

    Raises:
        StoreError: the URL's object path has ``..`` parts (it would leave the cache), or
            ``ais://`` without ``AIS_ENDPOINT``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments) or not segments:
        raise StoreError(f"cannot cache {url}: its object path must be a plain path below the bucket")
    root = cache_root()
    if scheme == "ais":
        endpoint = urlsplit(_ais_endpoint(url))
        return root.joinpath("ais", endpoint.hostname or "localhost", str(endpoint.port or 80),
                             parts.netloc, *segments)
    if scheme == "s3":
        endpoint = _s3_endpoint()
        if endpoint:
            ep = urlsplit(endpoint)
            return root.joinpath("s3", ep.hostname or "localhost", str(ep.port or _default_port(ep.scheme)),
                                 parts.netloc, *segments)
        return root.joinpath("s3", parts.netloc, *segments)
    if scheme in ("gs", "gcs"):
        return root.joinpath("gs", parts.netloc, *segments)
    if scheme in ("http", "https"):
        return root.joinpath("http", parts.hostname or "localhost", str(parts.port or _default_port(scheme)),
                             *segments)
    return root.joinpath(scheme, parts.netloc, *segments)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


# ----------------------------------------------------------------------------- reading


def fetch(url: str, force: bool = False) -> Path:
    """The local cached copy of ``url``, downloaded first unless it is already there.

    The download goes to a temporary file beside the target and is renamed into place, so a
    cached file is always whole (several processes may race; the last rename wins, same bytes).
    There is no freshness check (as NeMo): delete the cache to see changed objects.

    Raises:
        StoreError: naming the URL (missing object, or failing after the retries).
    """
    target = cache_path(url)
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.part")

    def download() -> None:
        with _open_raw(url, 0) as src, open(tmp, "wb") as dst:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                dst.write(chunk)

    try:
        _with_retries(download, url, "download")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def read_bytes(url: str) -> bytes:
    """The whole object ``url`` in memory (from the cache when :func:`fetch` put it there).

    Raises:
        StoreError: naming the URL.
    """
    cached = cache_path(url)
    if cached.is_file():
        return cached.read_bytes()

    def read() -> bytes:
        with _open_raw(url, 0) as f:
            return f.read()

    return _with_retries(read, url, "read")


def localize(path: str) -> str:
    """A local path for ``path``: itself when local, the cached copy (fetched) when a URL."""
    return str(fetch(path)) if is_url(path) else path


def open_stream(url: str) -> IO[bytes]:
    """A binary file object reading ``url`` from the start, sequentially, without caching it.

    A read that fails mid-stream reopens the object at the current byte offset (a range request)
    and goes on, up to the retry budget; a tar stream over it survives dropped connections.

    Raises:
        StoreError: naming the URL (when opening, or when a read keeps failing).
    """
    return _ResumingReader(url)


class _ResumingReader:
    """A read-only stream over an object that reopens at the current offset when a read fails."""

    def __init__(self, url: str):
        self.url = url
        self.position = 0
        self._file = _with_retries(lambda: _open_raw(url, 0), url, "open")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        attempts, delay = _retry_policy()
        for attempt in range(attempts):
            try:
                data = self._file.read(size)
                self.position += len(data)
                return data
            except Exception as err:  # noqa: BLE001 - network errors come in many classes
                if _is_permanent(err) or attempt == attempts - 1:
                    raise StoreError(f"reading {self.url} failed at byte {self.position} after "
                                     f"{attempt + 1} attempt(s): {_describe(err)}") from err
                logger.warning("reading %s failed at byte %d (%s); reopening there", self.url, self.position,
                               _describe(err))
                time.sleep(delay * 2 ** attempt)
                self._close_quietly()
                try:
                    self._file = _open_raw(self.url, self.position)
                except Exception as reopen_err:  # noqa: BLE001
                    if _is_permanent(reopen_err):
                        raise StoreError(f"reopening {self.url}: {_describe(reopen_err)}") from reopen_err
                    self._file = _FailingFile(reopen_err)
        raise AssertionError("unreachable")

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _close_quietly(self) -> None:
        try:
            self._file.close()
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        self._close_quietly()

    def __enter__(self) -> "_ResumingReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _FailingFile:
    """Stands in for a stream that could not be reopened: its next read raises that error again,
    so the retry loop of :class:`_ResumingReader` counts it as one more failed attempt."""

    def __init__(self, err: Exception):
        self.err = err

    def read(self, size: int = -1) -> bytes:
        raise self.err

    def close(self) -> None:
        pass


def _open_raw(url: str, offset: int) -> IO[bytes]:
    """One attempt at opening ``url`` for reading from byte ``offset`` (no retries here)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "ais":
        obj = _ais_object(url)
        reader = obj.get_reader(byte_range=f"bytes={offset}-") if offset else obj.get_reader()
        return reader.as_file(max_resume=0)  # our own reader resumes (and counts the attempts)
    if scheme in ("http", "https"):
        return _open_http(url, offset)
    if scheme not in _FSSPEC_SCHEMES:
        raise StoreError(f"{url}: unsupported URL scheme {scheme!r} (use ais, s3, gs or http(s))")
    try:
        import fsspec
    except ImportError:
        raise StoreError(f"{url}: reading {scheme}:// needs fsspec and {_FSSPEC_SCHEMES[scheme]}: "
                         f"pip install 'myna[stores]'") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **_storage_options(scheme))
    except ImportError as err:
        raise StoreError(f"{url}: reading {scheme}:// needs {_FSSPEC_SCHEMES[scheme]} "
                         f"(pip install {_FSSPEC_SCHEMES[scheme]}): {err}") from None
    handle = fs.open(path, "rb")
    if offset:
        handle.seek(offset)
    return handle


def _open_http(url: str, offset: int) -> IO[bytes]:
    """A plain GET (with ``Range`` from ``offset``); a server that ignores the range is skipped
    forward. 404 raises FileNotFoundError; other failures raise for a retry."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise FileNotFoundError(f"HTTP 404 for {url}") from None
        raise
    body = _HTTPBody(response)
    if offset and response.status != 206:
        skipped = 0
        while skipped < offset:
            chunk = body.read(min(_CHUNK, offset - skipped))
            if not chunk:
                raise OSError(f"{url} ended at byte {skipped}, before {offset}")
            skipped += len(chunk)
    return body


class _HTTPBody:
    """An HTTP response body that raises on a premature end (``http.client`` returns b"" from
    ``read(n)`` when the connection drops before Content-Length bytes arrived)."""

    def __init__(self, response: Any):
        self.response = response
        length = response.headers.get("Content-Length")
        self.remaining = int(length) if length is not None and length.isdigit() else None

    def read(self, size: int = -1) -> bytes:
        data = self.response.read() if size is None or size < 0 else self.response.read(size)
        if self.remaining is not None:
            self.remaining -= len(data)
            if not data and self.remaining > 0 and size != 0:
                raise OSError(f"connection closed with {self.remaining} bytes of the body missing")
        return data

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> "_HTTPBody":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _storage_options(scheme: str) -> dict:
    if scheme == "s3":
        endpoint = _s3_endpoint()
        return {"endpoint_url": endpoint} if endpoint else {}
    return {}


def _s3_endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""


def _ais_endpoint(url: str) -> str:
    endpoint = os.environ.get("AIS_ENDPOINT", "")
    if not endpoint:
        raise StoreError(f"{url}: set AIS_ENDPOINT (http://host:port of the AIStore proxy) to read ais:// URLs")
    return endpoint


def _ais_object(url: str) -> Any:
    try:
        import aistore.sdk  # noqa: F401
    except ImportError:
        raise StoreError(f"{url}: reading ais:// needs the AIStore SDK: pip install 'myna[stores]'") from None
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not parts.netloc or not name:
        raise StoreError(f"{url}: an ais:// URL is ais://<bucket>/<object>")
    return _ais_client(_ais_endpoint(url)).bucket(parts.netloc, provider="ais").object(name)


_AIS_CLIENTS: dict[tuple[str, int], Any] = {}


def _ais_client(endpoint: str) -> Any:
    key = (endpoint, os.getpid())  # a client's HTTP session must not cross a fork
    if key not in _AIS_CLIENTS:
        from aistore.sdk import Client

        _AIS_CLIENTS[key] = Client(endpoint)
    return _AIS_CLIENTS[key]


def _retry_policy() -> tuple[int, float]:
    """(attempts, first delay in seconds) from the environment."""
    try:
        retries = int(os.environ.get("MYNA_DATA_STORE_RETRIES", "5"))
        delay = float(os.environ.get("MYNA_DATA_STORE_RETRY_DELAY", "0.5"))
    except ValueError as err:
        raise ValueError(f"MYNA_DATA_STORE_RETRIES / MYNA_DATA_STORE_RETRY_DELAY: {err}") from None
    return max(0, retries) + 1, max(0.0, delay)


def _with_retries(fn: Callable[[], Any], url: str, what: str) -> Any:
    attempts, delay = _retry_policy()
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - each backend raises its own network errors
            if isinstance(err, StoreError):
                raise
            if _is_not_found(err):
                raise StoreError(f"{url}: no such object ({_describe(err)})") from err
            if _is_permanent(err) or attempt == attempts - 1:
                raise StoreError(f"cannot {what} {url} after {attempt + 1} attempt(s): {_describe(err)}") from err
            wait = delay * 2 ** attempt
            logger.warning("%s %s failed (%s); retrying in %.1f s", what, url, _describe(err), wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _is_not_found(err: BaseException) -> bool:
    if isinstance(err, FileNotFoundError):
        return True
    name = type(err).__name__
    if name in ("ErrObjNotFound", "ErrBckNotFound", "NoSuchKey", "NoSuchBucket"):
        return True
    status = getattr(err, "status", None) or getattr(err, "status_code", None)
    return status == 404


def _is_permanent(err: BaseException) -> bool:
    """Errors that another attempt will not fix: missing objects, refused access, bugs."""
    if isinstance(err, (StoreError, ImportError, TypeError, AttributeError, PermissionError)):
        return True
    status = getattr(err, "status", None) or getattr(err, "status_code", None)
    return _is_not_found(err) or status in (401, 403)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# ----------------------------------------------------------------------------- rank-0 caching


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in a (possibly) distributed job.

    Attributes:
        global_rank: rank among all processes.
        local_rank: rank on this node.
        world_size: number of processes.
    """

    global_rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> "RankInfo":
        """From ``torch.distributed`` when its process group exists, else from the launcher's
        ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` (torchrun, Lightning; 0, 0, 1 when unset)."""
        local = int(os.environ.get("LOCAL_RANK", 0))
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                return cls(dist.get_rank(), local, dist.get_world_size())
        except ImportError:  # pragma: no cover
            pass
        return cls(int(os.environ.get("RANK", 0)), local, int(os.environ.get("WORLD_SIZE", 1)))


def cache_remote_data(
    manifests: Sequence[str],
    cache_audio: bool,
    ranks: RankInfo | None = None,
    barrier: Callable[[], None] | None = None,
    shared: bool | None = None,
    num_workers: int | None = None,
    wait_timeout: float | None = None,
) -> None:
    """Cache the manifests among ``manifests`` that are URLs (and with ``cache_audio`` every audio
    file they name) on one rank per cache, then wait until every rank sees the cache.

    The caching rank is global rank 0 when the cache is shared by all nodes
    (:func:`cache_is_shared`), else local rank 0 of each node. The others then wait:

    - at ``barrier()`` when given (every rank must call this function with the same arguments);
    - else at ``torch.distributed.barrier()`` when the process group exists (NeMo's way: build
      the loaders after it does, i.e. NeMo's ``defer_setup``);
    - else, in a multi-process job without a process group yet, by watching the cache for the
      caching rank's completion marks (at most ``wait_timeout`` seconds; default
      ``MYNA_DATA_STORE_WAIT`` or 3600), so loaders may also be built before the group exists.

    Args:
        manifests: manifest paths and URLs (local ones are left alone).
        cache_audio: also cache each line's audio (NeMo does for non-tarred datasets; tar shards
            are streamed, never cached). Relative audio paths resolve against the manifest's
            remote folder; absolute local paths are left alone.
        ranks: this process's place (default :meth:`RankInfo.current`).
        barrier: a callable all ranks meet at (overrides the choices above).
        shared: override :func:`cache_is_shared`.
        num_workers: parallel downloads (default min(16, 4 x CPUs)).

    Raises:
        StoreError: naming the URL that could not be read, or the wait that timed out.
    """
    urls = [m for m in manifests if is_url(m)]
    if not urls:
        return
    ranks = ranks or RankInfo.current()
    shared = cache_is_shared() if shared is None else shared
    is_cacher = (ranks.global_rank if shared else ranks.local_rank) == 0
    if is_cacher:
        for url in urls:
            _cache_manifest(url, cache_audio, num_workers)
    if barrier is not None:
        barrier()
        return
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
            return
    except ImportError:  # pragma: no cover
        pass
    if ranks.world_size > 1 and not is_cacher:
        _wait_for_marks(urls, cache_audio, ranks, wait_timeout)


def _done_mark(url: str, cache_audio: bool) -> Path:
    """The file whose presence says the manifest (and its audio) are cached."""
    manifest = cache_path(url)
    return manifest.with_name(manifest.name + ".audio-cached") if cache_audio else manifest


def _cache_manifest(url: str, cache_audio: bool, num_workers: int | None) -> None:
    logger.info("caching manifest %s", url)
    local = fetch(url)
    if not cache_audio:
        return
    mark = _done_mark(url, True)
    if mark.is_file():
        return
    audio = sorted(set(_remote_audio(local, url)))
    missing = [a for a in audio if not cache_path(a).is_file()]
    logger.info("caching audio of %s: %d files, %d not cached yet", url, len(audio), len(missing))
    if missing:
        from tqdm import tqdm

        workers = num_workers or min(16, 4 * (os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in tqdm(pool.map(fetch, missing), total=len(missing), desc=f"caching {posixpath.basename(url)}",
                          unit="file", disable=len(missing) < 50):
                pass
    tmp = mark.with_name(mark.name + f".{os.getpid()}.part")
    tmp.write_text(json.dumps({"manifest": url, "audio_files": len(audio)}) + "\n")
    os.replace(tmp, mark)


def _remote_audio(local_manifest: Path, url: str) -> Iterable[str]:
    """The audio URLs a cached manifest names (relative paths joined to the manifest's folder)."""
    with open(local_manifest, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as err:
                raise StoreError(f"{url}:{line_no}: malformed JSON ({err.msg})") from None
            key = next((k for k in _AUDIO_KEYS if isinstance(item, dict) and k in item), None)
            if key is None or not isinstance(item[key], str):
                raise StoreError(f"{url}:{line_no}: missing required key 'audio_filepath'")
            location = resolve_against(item[key], url)
            if is_url(location):
                yield location


def _wait_for_marks(urls: Sequence[str], cache_audio: bool, ranks: RankInfo, timeout: float | None) -> None:
    timeout = float(os.environ.get("MYNA_DATA_STORE_WAIT", 3600)) if timeout is None else timeout
    marks = [_done_mark(u, cache_audio) for u in urls]
    start = last_note = time.monotonic()
    while not all(m.is_file() for m in marks):
        now = time.monotonic()
        if now - start > timeout:
            pending = [u for u, m in zip(urls, marks) if not m.is_file()]
            raise StoreError(f"rank {ranks.global_rank}: waited {timeout:.0f} s for the caching rank to cache "
                             f"{pending} (no process group yet; build loaders after it exists, or check rank 0)")
        if now - last_note > 60:
            logger.info("rank %d waiting for the caching rank (%d of %d manifests cached)", ranks.global_rank,
                        sum(m.is_file() for m in marks), len(marks))
            last_note = now
        time.sleep(0.2)
