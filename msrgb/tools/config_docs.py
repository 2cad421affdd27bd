"""docs/configuration.md, made from config/schema.json: every setting with its type, default and
description, so that the reference and the checks the workflow applies are one text.

    python -m msrgb.tools.config_docs     # rewrites docs/configuration.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

INTRO = """# Configuration reference

Made from `config/schema.json` by `python -m msrgb.tools.config_docs` (a test checks that they
agree): edit the schema, then run that command.

All settings live in `config/config.yaml` (with a comment each) and are checked against the
schema before anything runs; any of them can be set on the command line with
`--config key=value`. Unknown keys, wrong types, a missing input folder, or input and output
folders that overlap stop the run at once with a message that names the key or folder.
On the command line, `true`/`false` are taken in any case (`--config contact_sheets=false`).
Product specifications with numbers belong in a config file (`--configfile my.yaml`): Snakemake
passes the values nested inside a `--config` mapping as text.

| setting | type | default | what it does |
|---|---|---|---|
"""


def _type(spec: dict[str, Any]) -> str:
    kinds = spec.get("type")
    if kinds is None and "oneOf" in spec:
        kinds = [s.get("type") or ("`" + "`, `".join(map(str, s["enum"])) + "`" if "enum" in s else "?") for s in spec["oneOf"]]
        kinds = [k for kind in kinds for k in (kind if isinstance(kind, list) else [kind])]
    if kinds is None and "enum" in spec:
        return " or ".join(f"`{v}`" for v in spec["enum"])
    if kinds is None:
        return "see the description"
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return " or ".join(str(k) for k in kinds if k != "null") + (" (or none)" if "null" in kinds else "")


def _default(key: str, spec: dict[str, Any], required: list[str]) -> str:
    if key in required:
        return "required"
    if "default" not in spec:
        return "none"
    value = spec["default"]
    if value is None:
        return "none"
    if value == "":
        return "empty"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`".replace("|", "\\|")


def _text(description: str) -> str:
    """The description with its ``docs/x.md`` mentions as links, and no table-breaking bars."""
    text = description.replace("|", "\\|").replace("\n", " ")
    return re.sub(r"docs/([a-z-]+)\.md", r"[\1](\1.md)", text)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with a ``$ref`` to the schema's definitions replaced by what it names."""
    if "$ref" not in spec:
        return spec
    target = schema["$defs"][spec["$ref"].rsplit("/", 1)[-1]]
    return {**target, **{k: v for k, v in spec.items() if k != "$ref"}}


def _rows(key: str, spec: dict[str, Any], schema: dict[str, Any], required: list[str]) -> list[str]:
    """The row of ``key``, then one per setting nested in it (``export.split.by``)."""
    spec = _resolve(spec, schema)
    rows = [f"| `{key}` | {_type(spec)} | {_default(key, spec, required)} | {_text(spec.get('description', ''))} |\n"]
    nested: dict[str, Any] = spec.get("properties") or next((s["properties"] for s in spec.get("oneOf", []) if "properties" in s), {})
    if spec.get("type") == "object" or "oneOf" in spec:
        for name, inner in nested.items():
            if "description" in inner or "$ref" in inner:
                rows += _rows(f"{key}.{name}", inner, schema, [])
    return rows


def reference(schema: dict[str, Any]) -> str:
    """The text of docs/configuration.md for ``schema``."""
    required = schema.get("required", [])
    rows = [row for key, spec in schema["properties"].items() for row in _rows(key, spec, schema, required)]
    return INTRO + "".join(rows)


def main() -> None:
    repo = Path(__file__).resolve().parents[2]
    schema = json.loads((repo / "config" / "schema.json").read_text(encoding="utf-8"))
    (repo / "docs" / "configuration.md").write_text(reference(schema), encoding="utf-8")
    print("wrote docs/configuration.md", file=sys.stderr)


if __name__ == "__main__":
    main()
