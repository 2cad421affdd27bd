"""Object storage (``input_dir`` and ``output_dir`` as ``s3://bucket/prefix``), through obstore;
and files at http(s) URLs (STAC assets).

Paginated LISTs of a prefix find every object with its size and modification time (what
discovery and the up-to-date check need, so a no-op rerun sends no request per object); the
shard jobs GET each object whole, several at once ahead of the conversion (:func:`prefetch`),
read it from memory, and PUT each image once (:func:`put`).

Credentials, region and endpoint come only from the standard AWS sources: the environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``), the shared files of ``AWS_PROFILE`` (``~/.aws/credentials`` and
``~/.aws/config``) and, failing those, the instance or container role. A public bucket is read
without signing with ``AWS_NO_SIGN_REQUEST=YES`` (or ``AWS_SKIP_SIGNATURE=true``).

Errors: a missing or forbidden object is that image's bad input (:class:`InputError`); a store
that does not answer after the retries (the server gone, the network down) is
:class:`StorageError`, which ends the job (what was converted is kept, the next run resumes).
Messages name the ``s3://`` URL and never a credential.
"""

from __future__ import annotations

import configparser
import datetime
import functools
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from msrgb.errors import InputError, MsrgbError, OutputError, StorageError
from msrgb.storage.locations import SCHEME, HttpPath, S3Path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator


#: retries of a request that failed for a reason that may pass (a 5xx answer such as 503
#: SlowDown, a timeout, a refused connection), with exponential backoff
MAX_RETRIES = 5
RETRY_TIMEOUT_SECONDS = 30.0
#: how long one request may take, whole object included
REQUEST_TIMEOUT_SECONDS = 300
#: objects GET at once ahead of the conversion in a shard job
FETCH_THREADS = 16
#: images whose files are larger than this together are fetched when their turn comes, not
#: ahead (the read-ahead of 64 images then holds at most 256 MB)
PREFETCH_MAX_BYTES = 4 * 2**20


# --- the client --------------------------------------------------------------------------

_stores: dict[str, Any] = {}
_stores_lock = threading.Lock()


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "yes", "true", "on")


def _profile_settings() -> dict[str, str]:
    """Credentials, region and endpoint of ``AWS_PROFILE`` (or ``default``) from the shared
    files, for what the environment does not set."""
    profile = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    home = os.path.expanduser("~")
    found: dict[str, str] = {}
    files = (
        (os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(home, ".aws", "credentials"), profile),
        (
            os.environ.get("AWS_CONFIG_FILE") or os.path.join(home, ".aws", "config"),
            profile if profile == "default" else f"profile {profile}",
        ),
    )
    for path, section in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error) as exc:
            raise StorageError(f"the AWS settings file {path} cannot be read: {exc}") from exc
        if parser.has_section(section):
            for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region", "endpoint_url"):
                if parser.has_option(section, key):
                    found.setdefault(key, parser.get(section, key).strip())
    return found


def client_settings() -> dict[str, Any]:
    """The settings given to obstore on top of what it reads from the environment itself."""
    env = os.environ
    settings: dict[str, Any] = {}
    profile = _profile_settings()
    if not env.get("AWS_ACCESS_KEY_ID") and "aws_access_key_id" in profile:
        settings["access_key_id"] = profile["aws_access_key_id"]
        settings["secret_access_key"] = profile.get("aws_secret_access_key", "")
        if "aws_session_token" in profile:
            settings["session_token"] = profile["aws_session_token"]
    if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
        settings["region"] = profile.get("region", "us-east-1")
    elif env.get("AWS_DEFAULT_REGION") and not env.get("AWS_REGION"):
        settings["region"] = env["AWS_DEFAULT_REGION"]
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or profile.get("endpoint_url")
    if endpoint:
        settings["endpoint"] = endpoint
        # a custom endpoint (MinIO, Ceph, a local server) names buckets in the path
        settings["virtual_hosted_style_request"] = False
    if _true(env.get("AWS_NO_SIGN_REQUEST")) or _true(env.get("AWS_SKIP_SIGNATURE")):
        settings["skip_signature"] = True
    return settings


def store(bucket: str) -> Any:
    """The obstore client of ``bucket`` (one per process and bucket; thread safe)."""
    with _stores_lock:
        found = _stores.get(bucket)
        if found is None:
            from obstore.store import S3Store

            settings = client_settings()
            endpoint = settings.get("endpoint", "")
            # a whole Sentinel-2 band is a few hundred MB: a request may take minutes to finish
            client_options: dict[str, Any] = {"timeout": f"{REQUEST_TIMEOUT_SECONDS}s", "connect_timeout": "10s"}
            if endpoint.startswith("http://"):
                client_options["allow_http"] = True
            retry = {
                "max_retries": MAX_RETRIES,
                "backoff": {"init_backoff": datetime.timedelta(milliseconds=100), "base": 2.0,
                            "max_backoff": datetime.timedelta(seconds=5)},
                "retry_timeout": datetime.timedelta(seconds=RETRY_TIMEOUT_SECONDS),
            }  # fmt: skip
            try:
                found = S3Store(
                    bucket, client_options=client_options, retry_config=retry, **settings  # type: ignore[arg-type]
                )
            except Exception as exc:  # obstore raises its own errors for bad settings
                raise StorageError(f"{SCHEME}{bucket}: the S3 client cannot be set up: {first_line(exc)}") from exc
            _stores[bucket] = found
        return found


def first_line(exc: BaseException) -> str:
    """The gist of an obstore error (its first line; the rest is a debug dump)."""
    text = str(exc).strip().splitlines()
    if "169.254.169.254" in str(exc) or "169.254.170.2" in str(exc):
        return (
            "no AWS credentials found: none in the environment (AWS_ACCESS_KEY_ID...), in "
            "AWS_PROFILE's files or from an instance role; for a public bucket set "
            "AWS_NO_SIGN_REQUEST=YES"
        )
    return text[0] if text else type(exc).__name__


# --- reading -----------------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pending: dict[S3Path | HttpPath, Future[bytes]] = {}
_pending_lock = threading.Lock()


def missing_or_denied() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The errors obstore raises for a missing object, and for one the keys may not read."""
    from obstore.exceptions import NotFoundError, PermissionDeniedError, UnauthenticatedError

    return (FileNotFoundError, NotFoundError), (PermissionError, PermissionDeniedError, UnauthenticatedError)


def unanswered(path: object, exc: BaseException, who: str = "the object store") -> StorageError:
    """The error that ends a job whose store stopped answering (after the retries)."""
    return StorageError(
        f"{path}: {who} did not answer ({first_line(exc)}); what was converted is kept: run "
        "again to resume"
    )


@contextmanager
def _request(
    path: S3Path,
    missing: Callable[[BaseException], BaseException | None],
    denied: Callable[[BaseException], BaseException],
) -> Iterator[None]:
    """Sort what obstore raises for a request about ``path``: ``missing`` and ``denied`` make
    the error of a missing or forbidden object (``missing`` may return None: no error); msrgb's
    own errors pass; anything else means the store did not answer (:func:`unanswered`)."""
    missing_types, denied_types = missing_or_denied()
    try:
        yield
    except missing_types as exc:
        error = missing(exc)
        if error is not None:
            raise error from exc
    except denied_types as exc:
        raise denied(exc) from exc
    except (MsrgbError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise unanswered(path, exc) from exc


def _get(path: S3Path | HttpPath) -> bytes:
    if isinstance(path, HttpPath):
        return _get_http(path)
    import obstore

    with _request(
        path,
        missing=lambda exc: InputError(f"{path}: does not exist (deleted since the run was planned?)"),
        denied=lambda exc: InputError(f"{path}: cannot be read: access denied ({first_line(exc)})"),
    ):
        data = obstore.get(store(path.bucket), path.key).bytes()
    return bytes(data)


def _get_http(path: HttpPath) -> bytes:
    """GET ``path`` with the retries of an S3 request (5xx answers, timeouts, refusals)."""
    import time
    import urllib.error
    import urllib.request

    delay, deadline = 0.1, time.monotonic() + RETRY_TIMEOUT_SECONDS
    for attempt in range(MAX_RETRIES + 1):
        try:
            with urllib.request.urlopen(path.url, timeout=RETRY_TIMEOUT_SECONDS) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise InputError(f"{path}: does not exist (HTTP {exc.code})") from exc
            if exc.code in (401, 403):
                raise InputError(f"{path}: cannot be read: access denied (HTTP {exc.code})") from exc
            if exc.code < 500 and exc.code != 429:
                raise InputError(f"{path}: cannot be read (HTTP {exc.code} {exc.reason})") from exc
            failure: Exception = exc
        except (urllib.error.URLError, OSError) as exc:
            failure = exc
        if attempt == MAX_RETRIES or time.monotonic() + delay > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise unanswered(path, failure, who="the server") from failure


def get(path: S3Path | HttpPath) -> bytes:
    """The whole object at ``path``: fetched ahead by :func:`prefetch`, or now."""
    with _pending_lock:
        future = _pending.pop(path, None)
    if future is not None:
        return future.result()
    return _get(path)


def prefetch(paths: Iterable[S3Path | HttpPath]) -> int:
    """Start fetching ``paths`` in the background (:data:`FETCH_THREADS` at once); :func:`get`
    then takes the result. Returns how many were started."""
    global _pool
    started = 0
    with _pending_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="msrgb-fetch")
        for path in paths:
            if path not in _pending:
                _pending[path] = _pool.submit(_get, path)
                started += 1
    return started


def forget_prefetched() -> None:
    """Drop fetches nobody will take (a job that stops early)."""
    with _pending_lock:
        for future in _pending.values():
            future.cancel()
        _pending.clear()


# --- writing -----------------------------------------------------------------------------


def put(path: S3Path, data: bytes | Iterable[bytes]) -> None:
    """Write the object at ``path`` with one PUT: it is there whole or not at all. Raises
    :class:`OutputError` when the bucket refuses writes (nothing more can be written),
    :class:`StorageError` when the store does not answer."""
    import obstore

    body = data if isinstance(data, bytes) else b"".join(data)
    with _request(
        path,
        missing=lambda exc: OutputError(f"{path}: cannot be written: the bucket does not exist ({first_line(exc)})"),
        denied=lambda exc: OutputError(f"{path}: cannot be written: access denied ({first_line(exc)})"),
    ):
        obstore.put(store(path.bucket), path.key, body)


def delete(path: S3Path) -> None:
    """Delete the object at ``path`` (no error if it is not there)."""
    import obstore

    with _request(
        path,
        missing=lambda exc: None,
        denied=lambda exc: OutputError(f"{path}: cannot be deleted: access denied ({first_line(exc)})"),
    ):
        obstore.delete(store(path.bucket), path.key)


_uploads: ThreadPoolExecutor | None = None
#: images written but not yet PUT, at the most (a bound on the memory they hold)
UPLOADS_IN_FLIGHT = 64
_in_flight = threading.BoundedSemaphore(UPLOADS_IN_FLIGHT)


def put_later(path: S3Path, data: bytes | Iterable[bytes]) -> Future[None]:
    """:func:`put` in the background (:data:`FETCH_THREADS` at once); waits while
    :data:`UPLOADS_IN_FLIGHT` are under way. The future raises what :func:`put` raises."""
    global _uploads
    body = data if isinstance(data, bytes) else b"".join(data)
    _in_flight.acquire()
    try:
        with _pending_lock:
            if _uploads is None:
                _uploads = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="msrgb-put")
        future = _uploads.submit(put, path, body)
    except BaseException:
        _in_flight.release()
        raise
    future.add_done_callback(lambda _: _in_flight.release())
    return future


def gdal_name(path: S3Path | HttpPath) -> str:
    """The name GDAL reads ``path`` by with range requests (``/vsis3/``, ``/vsicurl/``), with
    GDAL's S3 settings taken from the same AWS sources as msrgb's (:func:`client_settings`)."""
    if isinstance(path, HttpPath):
        return f"/vsicurl/{path.url}"
    _configure_gdal_s3()
    return f"/vsis3/{path.bucket}/{path.key}"


@functools.cache
def _configure_gdal_s3() -> None:
    """Put msrgb's S3 settings where GDAL reads them too, the environment (once per process;
    what the environment already says stays)."""
    settings = client_settings()
    gdal = {"AWS_VIRTUAL_HOSTING": "TRUE"}
    if "endpoint" in settings:
        scheme, _, host = settings["endpoint"].partition("://")
        gdal = {"AWS_S3_ENDPOINT": host.rstrip("/"), "AWS_HTTPS": "NO" if scheme == "http" else "YES",
                "AWS_VIRTUAL_HOSTING": "FALSE"}  # fmt: skip
    for key, name in (("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                      ("session_token", "AWS_SESSION_TOKEN"), ("region", "AWS_REGION")):  # fmt: skip
        if key in settings:
            gdal[name] = settings[key]
    if settings.get("skip_signature"):
        gdal["AWS_NO_SIGN_REQUEST"] = "YES"
    for name, value in gdal.items():
        if name not in os.environ:
            os.environ[name] = _GDAL_SET[name] = value


#: the GDAL settings :func:`_configure_gdal_s3` put in the environment
_GDAL_SET: dict[str, str] = {}


def forget_clients() -> None:
    """Make the object-store clients and GDAL's S3 settings again from the environment at the
    next request: for a process that runs the workflow more than once (the in-process engine,
    the Python API) with other AWS settings between runs."""
    with _stores_lock:
        _stores.clear()
    for name, value in list(_GDAL_SET.items()):
        if os.environ.get(name) == value:
            del os.environ[name]
        del _GDAL_SET[name]
    _configure_gdal_s3.cache_clear()
