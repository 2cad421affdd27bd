"""Shards and the plan of a run.

* each input goes to shard ``h & (S - 1)`` where ``h`` is a hash of its relative path and ``S``
  (the shard count) is a power of two; so a file never moves when others are added or removed,
  and changing ``S`` only splits or merges shards;
* each shard has a shard list listing its files with their size and modification time, plus the
  digest of every product. The shard list's digest (the shard's *token*) names the marker file a
  finished job of that shard leaves (``.msrgb/done/<S>/<i>/<token>``): a shard whose marker is
  missing has something new to do, which is how Snakemake learns which shards to run without
  the workflow writing anything while it is read (docs/how-it-works.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from msrgb.config.products import Product
from msrgb.errors import PlanError
from msrgb.outputs.paths import OutputPaths
from msrgb.sources.discovery import Source, rows_text
from msrgb.sources.hashing import path_hash
from msrgb.storage import tsv
from msrgb.storage.files import write_if_changed

# v3: records of earlier states were made without radiometric offsets, so the jobs check those
# inputs once (msrgb.jobs.shard.work_to_do).
#: the first line of a shard list (its text is hashed into the shard's token: unchanged since v3)
SHARD_LIST_HEADER = "# msrgb shard manifest v3"
#: the first field of a shard list's setting rows (every other row with fields is a member)
_PRODUCT_ROW, _ON_ERROR_ROW = "# product", "# on_error"


def shard_count(n_files: int, parallelism: int, target_size: int, min_size: int) -> int:
    """The power-of-two shard count for ``n_files`` files and ``parallelism`` concurrent jobs.

    At least 2 shards per concurrent job (so a slow shard does not idle the others), at least
    ``n_files / target_size`` shards (so one shard is a few seconds of work), but no shard
    smaller than ``min_size`` files on average (each job costs a Python start-up)."""
    want = max(2 * max(parallelism, 1), -(-n_files // max(target_size, 1)))
    cap = max(1, n_files // max(min_size, 1))
    s = 1
    while s < min(want, cap):
        s *= 2
    while s > 1 and s > cap:
        s //= 2
    return s


def shard_of(rel: str, n_shards: int) -> int:
    return path_hash(rel) & (n_shards - 1)


def split(sources: Sequence[Source], n_shards: int) -> list[list[Source]]:
    """Members of each shard, each list sorted by relative path."""
    shards: list[list[Source]] = [[] for _ in range(n_shards)]
    for s in sources:
        shards[shard_of(s.rel, n_shards)].append(s)
    return shards


def shard_list_text(
    members: Sequence[Source], products: Sequence[Product], on_error: str = "fail"
) -> str:
    rows: list[list[object]] = [[SHARD_LIST_HEADER], [_ON_ERROR_ROW, on_error]]
    rows += [[_PRODUCT_ROW, p.name, p.digest()] for p in products]
    return tsv.text(rows) + rows_text(members)


def read_shard_list(path: Path) -> tuple[list[Source], dict[str, str]]:
    """Members and settings of a shard list file (:func:`read_shard_list_text`)."""
    return read_shard_list_text(shard_list_file_text(path))


def shard_list_file_text(path: Path) -> str:
    """A shard list's text exactly as written: a quoted name may hold a carriage return, which
    reading in text mode would turn into a line break (and change the shard's token)."""
    return path.read_bytes().decode("utf-8")


def read_shard_list_text(text: str) -> tuple[list[Source], dict[str, str]]:
    """Members and settings of a shard list: product name -> digest, plus the key ``"on_error"``
    for the error policy."""
    members, digests = [], {}
    plain = _plain_members(text)
    for row in tsv.rows_of(text) if plain is None else plain[1]:
        if _settings_row(row):
            digests[row[1] if row[0] == _PRODUCT_ROW else "on_error"] = row[2] if row[0] == _PRODUCT_ROW else row[1]
        elif len(row) > 1:  # not the title row
            files = tuple(zip(row[4::2], row[5::2])) if len(row) > 3 else None
            members.append(Source(row[0], int(row[1]), int(row[2]), files))
    return members + ([] if plain is None else plain[0]), digests


def _plain_members(text: str) -> tuple[list[Source], list[list[str]]] | None:
    """Where no field of a shard list is quoted and every member after its first rows is a
    stacked file (a name, size and time): those members, made with a few operations on all
    their lines at once (a shard job reads 10,000s), and the first rows (title, settings, any
    other members) to read one by one; else None."""
    if '"' in text or "\r" in text:
        return None
    lines = text.split("\n")
    first = _first_rows_end(lines)
    rest = lines[first:-1] if lines[-1] == "" else lines[first:]
    fields = "\t".join(rest).split("\t")
    rels = fields[0::3]
    if len(fields) != 3 * len(rest) or "" in rels or _PRODUCT_ROW in rels:  # (that row: a setting)
        return None
    members = list(map(Source, rels, map(int, fields[1::3]), map(int, fields[2::3])))
    return members, [line.split("\t") for line in lines[:first] if line]


def member_paths(text: str) -> list[str]:
    """The relative paths of a shard list's members: :func:`read_shard_list_text`'s, without
    making a source of each where no field is quoted (a summary counts 100,000s of them)."""
    if '"' in text:
        return [s.rel for s in read_shard_list_text(text)[0]]
    lines = text.split("\n")
    first = _first_rows_end(lines)
    rels = [row[0] for row in (line.split("\t") for line in lines[:first] if "\t" in line) if not _settings_row(row)]
    return rels + [line[: line.index("\t")] for line in lines[first:] if "\t" in line]


def _first_rows_end(lines: Sequence[str]) -> int:
    """Where a shard list's first rows (its title and settings, then any member whose name
    begins like theirs) end: at its first line that does not begin with ``# ``."""
    return next((i for i, line in enumerate(lines) if not line.startswith("# ")), len(lines))


def _settings_row(row: Sequence[str]) -> bool:
    """Whether a shard list's row is one of its settings (the error policy, a product's digest),
    not a member named like one: a folder of band files ``# product`` has a row of at least four
    fields, and a TIFF's name ends with its suffix."""
    return (row[0] == _PRODUCT_ROW and len(row) == 3) or (row[0] == _ON_ERROR_ROW and len(row) == 2)


def planned_paths(output: OutputPaths) -> tuple[int, list[str]]:
    """The shard count of the plan the run wrote and the relative paths of all its inputs."""
    n_shards = _plan_file(output)[0]
    texts = (shard_list_file_text(output.shard_list(n_shards, i)) for i in range(n_shards))
    return n_shards, [rel for text in texts for rel in member_paths(text)]


def shard_token(shard_list: str) -> str:
    """The token of a shard whose shard list is ``shard_list``: a digest of its text."""
    return hashlib.sha256(shard_list.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    """The shards of one run: ``members[i]`` are the sources of shard ``i``, ``shard_lists[i]``
    its shard list's text; every shard job uses ``threads`` threads. ``tokens[i]`` names the
    marker Snakemake is asked for: the shard list's token, or for a shard that must run although
    its shard list is unchanged (an image missing on disk) that token with the time appended."""

    n_shards: int
    members: list[list[Source]]
    threads: int = 1
    shard_lists: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    #: the digests of what the other jobs are made from: ``stretch/<product>`` (the stretch
    #: sample), ``sheets/<product>`` (the sheet lists), ``summary`` (planning errors)
    parts: dict[str, str] = field(default_factory=dict)

    def clean_token(self, shard: int) -> str:
        return shard_token(self.shard_lists[shard])

    def rerun(self, shards: Sequence[int]) -> Plan:
        """The same plan with ``shards`` asked to run again (a fresh token each)."""
        tokens = list(self.tokens)
        for shard in shards:
            tokens[shard] = f"{self.clean_token(shard)}-{time.time_ns()}"
        return replace(self, tokens=tokens)


def make_plan(
    sources: Sequence[Source],
    n_shards: int,
    products: Sequence[Product],
    threads: int = 1,
    on_error: str = "fail",
) -> Plan:
    """Split ``sources`` into ``n_shards`` shards, with their shard_lists (nothing is written)."""
    members = split(sources, n_shards)
    shard_lists = [shard_list_text(m, products, on_error) for m in members]
    return Plan(n_shards, members, threads, shard_lists, [shard_token(m) for m in shard_lists])


PLAN_HEADER = "# msrgb plan v2"


def write_plan(output: OutputPaths, plan: Plan) -> None:
    """Write the shard lists that changed, and the plan file that names the shard count, the
    threads and the tokens for jobs started elsewhere."""
    for shard, text in enumerate(plan.shard_lists):
        write_if_changed(output.shard_list(plan.n_shards, shard), text)
    rows: list[list[object]] = [[PLAN_HEADER], ["shards", plan.n_shards], ["threads", plan.threads]]
    rows += [["token", shard, token] for shard, token in enumerate(plan.tokens)]
    rows += [["part", part, digest] for part, digest in sorted(plan.parts.items())]
    write_if_changed(output.plan_file(), tsv.text(rows))


def load_plan(output: OutputPaths) -> Plan:
    """The plan the main process wrote when the run started (for jobs that run on other
    machines, which must see the same shards, threads and tokens whatever their own command
    line says)."""
    n_shards, threads, token_list, parts = _plan_file(output)
    texts = [shard_list_file_text(output.shard_list(n_shards, i)) for i in range(n_shards)]
    members = [read_shard_list_text(t)[0] for t in texts]
    return Plan(n_shards, members, threads, texts, token_list, parts)


def plan_shard_count(output: OutputPaths) -> int:
    """The shard count of the plan file (whose shard lists a job fetches: msrgb.jobs.runstore)."""
    return _plan_file(output)[0]


def _plan_file(output: OutputPaths) -> tuple[int, int, list[str], dict[str, str]]:
    path = output.plan_file()
    try:
        rows = list(tsv.rows(path))
    except FileNotFoundError as exc:
        raise PlanError(
            f"{path} is missing; run snakemake from the start. A job reads the plan the run "
            "wrote there, so the output folder (work_dir for an output_dir in S3) must be on a "
            "file system the jobs share, or output_dir in S3 (docs/object-storage.md)"
        ) from exc
    try:
        values = {row[0]: int(row[1]) for row in rows if row[0] in ("shards", "threads")}
        n_shards, threads = values["shards"], values["threads"]
        tokens = dict((int(row[1]), row[2]) for row in rows if row[0] == "token")
        token_list = [tokens[i] for i in range(n_shards)]
        parts = {row[1]: row[2] for row in rows if row[0] == "part"}
    except (ValueError, KeyError, IndexError) as exc:
        raise PlanError(f"{path} is damaged; run snakemake from the start") from exc
    return n_shards, threads, token_list, parts


def plan_shards(
    output: OutputPaths,
    sources: Sequence[Source],
    n_shards: int,
    products: Sequence[Product],
    threads: int = 1,
    on_error: str = "fail",
) -> Plan:
    """:func:`make_plan` and :func:`write_plan` at once (for running shards outside Snakemake,
    as the benchmarks and tests do)."""
    plan = make_plan(sources, n_shards, products, threads, on_error)
    write_plan(output, plan)
    return plan
