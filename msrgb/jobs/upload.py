"""With ``output_dir`` in S3: the run's results other than the images (contact sheets,
summary.json, errors.tsv, provenance manifests, histograms, clipping sheets, legends, stretch
limits) are made in the local work folder like any run's, then uploaded by the last job, each
file with one PUT when it changed since the last upload. The images themselves are PUT by the
shard jobs as they are made. The state (``.msrgb/``) and the logs stay local."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from msrgb.outputs.paths import STATE_DIR, OutputPaths
from msrgb.storage import remote, tsv
from msrgb.storage.files import write_atomic
from msrgb.storage.locations import S3Path

log = logging.getLogger("msrgb")

#: folders of the work folder that are not uploaded: the run's state and the job logs
LOCAL_ONLY = (STATE_DIR, "logs")


def uploaded_record(output: OutputPaths) -> Path:
    """What was uploaded: path relative to the work folder and SHA-256, one per line."""
    return output.state_root / "uploaded.tsv"


def _files(top: Path) -> dict[str, Path]:
    found = {}
    for folder, dirs, files in os.walk(top):
        rel_dir = os.path.relpath(folder, top)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d not in LOCAL_ONLY]
            rel_dir = ""
        for name in files:
            if name.startswith(".msrgb-") and name.endswith(".tmp"):
                continue  # another job's file being written
            rel = f"{rel_dir}/{name}" if rel_dir else name
            found[rel.replace(os.sep, "/")] = Path(folder, name)
    return found


def upload_results(output: OutputPaths) -> tuple[int, int]:
    """PUT every file of the work folder (but the state and logs) whose content is not what
    was last uploaded, and DELETE the uploaded ones that are gone. Returns (put, deleted)."""
    target = S3Path.parse(output.images)
    record = uploaded_record(output)
    before: dict[str, str] = {}
    if record.exists():
        before = {row[0]: row[1] for row in tsv.rows(record) if len(row) == 2}
    now = dict(before)
    put = deleted = 0
    try:
        files = _files(output.output_dir)
        for rel, path in sorted(files.items()):
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            if before.get(rel) != sha:
                remote.put(target / rel, data)
                now[rel] = sha
                put += 1
        for rel in sorted(set(before) - set(files)):
            remote.delete(target / rel)
            del now[rel]
            deleted += 1
    finally:
        write_atomic(record, tsv.text(sorted(now.items())).encode("utf-8"))
    log.info("uploaded %d file(s) to %s, deleted %d", put, target, deleted)
    return put, deleted
