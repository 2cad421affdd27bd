"""A shard's summary part: merged from the part of a state and of the records added to it, and
kept in a file that is taken only for the state it was made from (msrgb.jobs.part_files)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from msrgb.jobs import part_files
from msrgb.jobs.summary_parts import ShardPart, merged, shard_part
from msrgb.outputs.state import StateData, appended_state, state_of_text, state_text

SUFFIXES = {"truecolor": ".png", "ndvi": ".tif"}


def fields(part: ShardPart) -> object:
    """Everything a part holds, comparable with ``==``."""
    products = {
        name: (p.manifest, sorted(p.envs), p.clip_rels, None if p.clip_figures is None else p.clip_figures.tolist(), p.sample)
        for name, p in part.products.items()
    }
    return products, part.envs, sorted(part.skipped)  # (errors.tsv sorts them)


def records(rng: random.Random, rels: list[str]) -> StateData:
    """Records of ``rels`` at random as a job makes them: one or both products, most with their
    provenance (clip figures, then a radiometry, come with it), some inputs skipped as bad, two
    environments."""
    data = StateData(envs={"e1": "numpy 1", "e2": "numpy 2\tpillow 11"})
    for rel in rels:
        if rng.random() < 0.1:
            data.skipped[rel] = (rng.randint(1, 9), rng.randint(1, 9), rng.choice(["bad", "bad\ttiff", "cut\nshort"]))
            continue
        for product in rng.sample(sorted(SUFFIXES), rng.randint(1, 2)):
            key = (rel, product)
            data.records[key] = (rng.randint(1, 99), rng.randint(1, 99), rng.choice(["d1", "d2"]))
            if rng.random() < 0.1:  # (a record of a version before provenance)
                continue
            data.provenance[key] = (f"{rng.getrandbits(64):x}", f"{rng.getrandbits(64):x}", rng.choice(["e1", "e2"]))
            if rng.random() < 0.7:
                data.clipping[key] = " ".join([*(f"{rng.random():.4f}" for _ in range(6)), f"{rng.uniform(0, 255):.2f}"])
                if rng.random() < 0.3:
                    data.radiometry[key] = json.dumps({"B04": [0.0001, -0.1]})
    return data


def test_the_part_of_a_state_and_of_records_added_to_it_merge_into_the_part_of_both() -> None:
    rng = random.Random(5)
    names = [f"{folder}/{stem}_{i}.tif" for folder in ("a", "b c", "é") for stem in ("x", "x y", "line\nbreak") for i in range(30)]
    for _ in range(60):
        chosen = rng.sample(names, rng.randint(0, 60))
        cut = rng.randint(0, len(chosen))
        first, then = records(rng, chosen[:cut]), records(rng, chosen[cut:])
        then.skipped = {}  # (a state added to holds no input skipped as bad; the records added may)
        if rng.random() < 0.5:
            then.skipped = {rel: (1, 2, "bad") for rel in rng.sample(chosen[cut:], min(2, len(chosen) - cut))}
            then.records = {key: value for key, value in then.records.items() if key[0] not in then.skipped}
        first.skipped = {}
        base = state_text(**vars(first))
        both = state_of_text(appended_state(base, then))
        got = merged(shard_part(state_of_text(base), SUFFIXES), shard_part(then, SUFFIXES))
        assert got is not None and fields(got) == fields(shard_part(both, SUFFIXES))
    # records of one input in both: not merged (the caller makes the part from the whole state)
    one = records(random.Random(1), ["a/x_1.tif"])
    assert merged(shard_part(one, SUFFIXES), shard_part(one, SUFFIXES)) is None


def test_a_kept_part_is_taken_only_for_the_state_it_was_made_from(tmp_path: Path) -> None:
    rng = random.Random(3)
    state, kept = tmp_path / "state" / "4" / "1.tsv", tmp_path / "parts" / "4" / "1.json"
    state.parent.mkdir(parents=True)
    data = records(rng, [f"a/{stem}_{i}.tif" for stem in ("x", "line\nbreak", "quote\"d") for i in range(10)])
    state.write_text(state_text(**vars(data)))
    want = fields(shard_part(state_of_text(state.read_text()), SUFFIXES))
    assert fields(part_files.part_of_state(state, SUFFIXES, kept)) == want and kept.exists()
    assert fields(part_files.read_part(kept, part_files.made_from(state.read_bytes(), SUFFIXES))) == want
    # the kept part is what is taken: a part kept under the same name is returned as it is
    made_from = part_files.made_from(state.read_bytes(), SUFFIXES)
    other = shard_part(records(rng, ["z/other.tif"]), SUFFIXES)
    part_files.write_part(kept, other, made_from)
    assert fields(part_files.part_of_state(state, SUFFIXES, kept)) == fields(other)
    # ... and not for another state, other products, another format, or a file cut short
    state.write_text(state.read_text() + state_text(**vars(records(rng, ["b/new.tif"])))[len("# msrgb state v") :].partition("\n")[2])
    changed = fields(shard_part(state_of_text(state.read_text()), SUFFIXES))
    for spoil in ("state", "products", "format", "cut", "shape"):
        made_from = part_files.made_from(state.read_bytes(), SUFFIXES)
        part_files.write_part(kept, other, made_from if spoil != "state" else "0" * 64)
        if spoil == "format":
            kept.write_text(kept.read_text().replace(part_files.FORMAT, "msrgb shard part 0"))
        if spoil == "cut":
            kept.write_bytes(kept.read_bytes()[:-10])
        if spoil == "shape":  # (the same first fields, the rest as no version of it writes it)
            kept.write_text(json.dumps([part_files.FORMAT, made_from, {"products": {"truecolor": {"rels": 1}}}]) + "\n")
        suffixes = dict(SUFFIXES, ndvi=".png") if spoil == "products" else SUFFIXES
        assert fields(part_files.part_of_state(state, suffixes, kept)) == (
            fields(shard_part(state_of_text(state.read_text()), suffixes)) if spoil == "products" else changed
        ), spoil
    assert fields(part_files.part_of_state(tmp_path / "none.tsv", SUFFIXES, kept)) == fields(shard_part(StateData(), SUFFIXES))
