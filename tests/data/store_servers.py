"""Object-store servers on 127.0.0.1 for tests.

- :class:`S3Server`: moto's S3 server (``moto[server]``, the test extra) in a thread, with dummy
  credentials and ``AWS_ENDPOINT_URL_S3`` pointing at it; :meth:`S3Server.upload` copies a local
  folder into a bucket.
- :class:`AISStandIn`: a small HTTP server speaking the part of AIStore's REST API that an object
  GET uses (``GET``/``HEAD /v1/objects/<bucket>/<object>?provider=ais``, with ``Range``), serving
  a local folder per bucket. There is no AIStore server to run offline; this lets the real
  ``aistore`` SDK run against something. It can fail the next requests (503) or cut the next
  response short, and counts requests per object.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
             "AWS_SESSION_TOKEN": "testing"}


class S3Server:
    """moto's S3 in server mode on 127.0.0.1 (a free port); use as a context manager."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.url = ""

    def __enter__(self) -> "S3Server":
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    def env(self) -> dict[str, str]:
        """Environment for clients (boto3, s3fs, and processes started by the test)."""
        return {**DUMMY_AWS, "AWS_ENDPOINT_URL_S3": self.url}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def upload(self, folder: Path, bucket: str, prefix: str = "") -> int:
        """Create ``bucket`` (if needed) and put every file below ``folder`` under ``prefix``."""
        s3 = self.client()
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
        count = 0
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                key = "/".join(p for p in (prefix.strip("/"), path.relative_to(folder).as_posix()) if p)
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
                count += 1
        return count


class AISStandIn:
    """AIStore's object GET API over local folders: ``buckets`` maps bucket name -> folder."""

    def __init__(self, buckets: dict[str, Path]) -> None:
        self.buckets = {name: Path(folder) for name, folder in buckets.items()}
        self.requests: Counter = Counter()  # (bucket, object) -> GET count
        self.ranges: list[str | None] = []
        self.fail_next = 0  # answer this many GETs with 503
        self.cut_next_after: int | None = None  # the next GET body stops after this many bytes
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _locate(self):
                parts = urlsplit(self.path)
                pieces = parts.path.split("/", 4)  # '', 'v1', 'objects', bucket, object
                if len(pieces) < 5 or pieces[1] != "v1" or pieces[2] != "objects":
                    return None, None, None
                bucket, name = unquote(pieces[3]), unquote(pieces[4])
                folder = server.buckets.get(bucket)
                if folder is None:
                    return bucket, name, None
                path = (folder / name).resolve()
                if folder.resolve() not in path.parents or not path.is_file():
                    return bucket, name, None
                return bucket, name, path

            def _error(self, status: int, message: str) -> None:
                body = ('{"message":"%s","method":"%s","url_path":"%s","status":%d}'
                        % (message, self.command, urlsplit(self.path).path, status)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                bucket, name, path = self._locate()
                if path is None:
                    self._error(404, f"ais://{bucket}/{name} does not exist")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Ais-Size", str(path.stat().st_size))
                self.send_header("Last-Modified", formatdate(path.stat().st_mtime, usegmt=True))
                self.end_headers()

            def do_GET(self):
                bucket, name, path = self._locate()
                with server.lock:
                    server.requests[(bucket, name)] += 1
                    server.ranges.append(self.headers.get("Range"))
                    failing = server.fail_next > 0
                    if failing:
                        server.fail_next -= 1
                    cut, server.cut_next_after = server.cut_next_after, None
                if failing:
                    self._error(503, "injected failure")
                    return
                if path is None:
                    self._error(404, f"ais://{bucket}/{name} does not exist")
                    return
                body = path.read_bytes()
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=", 1)[1].split("-", 1)[0] or 0)
                    status = 206
                payload = body[start:]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Ais-Size", str(len(body)))
                self.end_headers()
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "AISStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def environ_with(values: dict[str, str]) -> dict[str, str]:
    """A copy of the environment with ``values`` set (for subprocesses)."""
    env = dict(os.environ)
    env.update(values)
    return env
