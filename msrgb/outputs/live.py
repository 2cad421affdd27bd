"""The live progress files shard jobs write (``.msrgb/live``), which the main process reads for its
progress display.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from msrgb.outputs.paths import OutputPaths


@dataclass
class Live:
    """What one shard job reports while it runs (``.msrgb/live/<n>/<shard>.json``)."""

    started: float
    total: int
    done: int
    bad: int
    finished: bool = False
    #: when the job last wrote this
    updated: float = 0.0


def write_live(path: Path, live: Live) -> None:
    """Written by a shard job, about every half second: small enough never to matter."""
    from msrgb.storage.files import write_atomic

    live.updated = time.time()
    write_atomic(path, json.dumps(live.__dict__).encode())


def job_ended(path: Path) -> bool:
    """Whether the shard job that last wrote the live file ``path`` got to its end (True when
    there is none: no earlier job of that shard); a job killed while converting leaves it
    unfinished."""
    try:
        return bool(json.loads(path.read_text()).get("finished"))
    except FileNotFoundError:
        return True
    except (OSError, ValueError, AttributeError):  # damaged, or from another version
        return False


def read_live(output: OutputPaths, n_shards: int, since: float) -> list[Live]:
    """The reports of the shard jobs started since ``since`` (this run's)."""
    folder = output.live(n_shards, 0).parent
    found: list[Live] = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return found
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            live = Live(**json.loads((folder / name).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            continue  # being replaced, or from another version
        if live.started >= since:
            found.append(live)
    return found
