"""A shard's summary part (msrgb.jobs.summary_parts) kept in a file, so that the next summary or
small change takes it instead of reading the shard's records again: written where a part is
made from a whole state, and taken only for the very state text, and the same products, it was
made from (a digest of both names it). JSON, not pickle: the output folder may be shared."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Mapping
from pathlib import Path

from msrgb.jobs.summary_parts import ProductPart, ShardPart, merged, shard_part
from msrgb.outputs.state import StateData, state_of_text
from msrgb.storage.files import write_atomic

#: the first field of a part file: a file of another format is not taken
FORMAT = "msrgb shard part 2"


def made_from(state: bytes, suffixes: Mapping[str, str]) -> str:
    """What names the part of the state text ``state`` for the products ``suffixes`` (name ->
    image suffix)."""
    return hashlib.sha256(json.dumps(list(suffixes.items())).encode() + b"\n" + state).hexdigest()


def part_of_state(path: Path, suffixes: Mapping[str, str], kept: Path | None = None) -> ShardPart:
    """The part of the state file at ``path`` (none: an empty part), as :func:`part_of_text`."""
    try:
        state = path.read_bytes()
    except FileNotFoundError:
        return shard_part(StateData(), suffixes)
    return part_of_text(state, suffixes, kept)


def part_of_text(state: bytes, suffixes: Mapping[str, str], kept: Path | None = None) -> ShardPart:
    """The part of the state text ``state``: the one in ``kept`` if it was made from this state
    and these products, else made from the state's records and, with ``kept``, written there for
    the next time."""
    key = made_from(state, suffixes)
    part = read_part(kept, key) if kept is not None else None
    if part is None:
        part = shard_part(state_of_text(state.decode("utf-8")), suffixes)
        if kept is not None:
            write_part(kept, part, key)
    return part


def part_of_job(kept: StateData, state: str, added_to: str | None, suffixes: Mapping[str, str], keep_at: Path) -> ShardPart:
    """The part of the state a shard job wrote (text ``state``), kept at ``keep_at`` for the
    next time: made from the job's records ``kept``, or, where the job added them to the state
    text ``added_to`` (msrgb.jobs.shard.run_shard), the part of that state (:func:`part_of_text`)
    merged with theirs."""
    if added_to is None:
        part = shard_part(kept, suffixes)
    else:
        earlier = part_of_text(added_to.encode("utf-8"), suffixes, keep_at)
        part = merged(earlier, shard_part(kept, suffixes)) or shard_part(state_of_text(state), suffixes)
    write_part(keep_at, part, made_from(state.encode("utf-8"), suffixes))
    return part


def write_part(path: Path, part: ShardPart, key: str) -> None:
    """Keep ``part``, made from what ``key`` (:func:`made_from`) names, at ``path``: a line of
    JSON, then each product's manifest lines as they are (the bulk of a part, not escaped)."""
    products, texts = {}, []
    for name, p in part.products.items():
        lines = [line for _, line in p.manifest]
        text = "".join(lines)
        split = text.count("\n") == len(lines)  # no line holds a line break of a quoted field
        texts.append(text)
        products[name] = {
            "rels": [rel for rel, _ in p.manifest],
            "chars": len(text),
            "lengths": None if split else [len(line) for line in lines],
            "envs": sorted(p.envs),
            "clip_rels": p.clip_rels,
            "clip_figures": base64.b64encode(p.clip_figures.astype("<f8").tobytes()).decode() if p.clip_figures is not None else None,
            "sample": p.sample,
        }
    head = json.dumps([FORMAT, key, {"products": products, "envs": part.envs, "skipped": part.skipped}], ensure_ascii=False)
    write_atomic(path, "\n".join([head, *texts]).encode("utf-8"))


def read_part(path: Path, key: str) -> ShardPart | None:
    """The part kept at ``path`` if it was made from what ``key`` names; else None (none kept,
    another format, made from something else, cut short)."""
    try:
        text = path.read_bytes().decode("utf-8")
        head, _, body = text.partition("\n")
        record = json.loads(head)
    except (FileNotFoundError, ValueError):  # (UnicodeDecodeError and JSON's errors are ValueErrors)
        return None
    if not (isinstance(record, list) and record[:2] == [FORMAT, key]):
        return None
    try:
        products, at = {}, 0
        for name, p in record[2]["products"].items():
            text, at = body[at : at + p["chars"]], at + p["chars"] + 1
            if len(text) != p["chars"]:
                return None
            products[name] = _product_part(p, text)
        if at - 1 != len(body) and products:
            return None
        skipped = [(rel, why) for rel, why in record[2]["skipped"]]
        return ShardPart(products=products, envs=record[2]["envs"], skipped=skipped)
    except (KeyError, TypeError, ValueError):  # not as this module writes it: the state is read
        return None


def _product_part(p: dict, text: str) -> ProductPart:
    import numpy as np

    if p["lengths"] is None:
        lines = [line + "\n" for line in text.split("\n")[:-1]]
    else:
        ends = list(itertools.accumulate(p["lengths"]))
        lines = [text[end - n : end] for n, end in zip(p["lengths"], ends)]
    figures = None if p["clip_figures"] is None else base64.b64decode(p["clip_figures"])
    return ProductPart(
        manifest=list(zip(p["rels"], lines)),
        envs=set(p["envs"]),
        clip_rels=p["clip_rels"],
        clip_figures=None if figures is None else np.frombuffer(figures, dtype="<f8").reshape(-1, 7).astype(np.float64),
        sample=[(h, rel, sha) for h, rel, sha in p["sample"]],
    )
