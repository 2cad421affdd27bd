"""``croissant.json``: the export described in MLCommons Croissant 1.0 (JSON-LD), so that
``mlcroissant`` and the tools that read Croissant load its records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from msrgb.config.export import SPLITS, ExportSettings
from msrgb.export.card import MANIFEST_COLUMNS

CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

#: Hub license ids and the URLs Croissant wants, for the common ones
LICENSES = {
    "cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "cc-by-sa-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "cc0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "mit": "https://opensource.org/licenses/MIT",
}


def croissant(settings: ExportSettings, product: str, manifest: str, tars: Mapping[str, str], suffix: str,
              description: str) -> str:  # fmt: skip
    """The JSON-LD text; ``manifest`` is manifest.csv's text (its SHA-256 goes in), ``tars``
    the WebDataset tar files with their SHA-256 (none for ImageFolder)."""
    media = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}[suffix]
    distribution: list[dict] = [{
        "@type": "cr:FileObject", "@id": "manifest.csv", "name": "manifest.csv", "contentUrl": "manifest.csv",
        "encodingFormat": "text/csv", "sha256": hashlib.sha256(manifest.encode()).hexdigest(),
    }]  # fmt: skip
    if tars:
        distribution += [{"@type": "cr:FileObject", "@id": t, "name": t, "contentUrl": t,
                          "encodingFormat": "application/x-tar", "sha256": sha} for t, sha in sorted(tars.items())]  # fmt: skip
        distribution.append({"@type": "cr:FileSet", "@id": "image-files", "name": "image-files", "containedIn": [{"@id": t} for t in sorted(tars)],
                             "encodingFormat": media, "includes": f"**/*{suffix}"})  # fmt: skip
    else:
        distribution.append({"@type": "cr:FileSet", "@id": "image-files", "name": "image-files", "encodingFormat": media,
                             "includes": [f"{s}/**/*{suffix}" for s in SPLITS]})  # fmt: skip
    fields = [_column(c) for c in MANIFEST_COLUMNS]
    images = [
        {"@type": "cr:Field", "@id": "images/image", "name": "image", "dataType": "sc:ImageObject",
         "source": {"fileSet": {"@id": "image-files"}, "extract": {"fileProperty": "content"}}},
        {"@type": "cr:Field", "@id": "images/filename", "name": "filename", "dataType": "sc:Text",
         "source": {"fileSet": {"@id": "image-files"}, "extract": {"fileProperty": "filename"}}},
    ]  # fmt: skip
    doc = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": settings.name or f"msrgb-{product}",
        "description": description,
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "citeAs": settings.attribution or "(no attribution given: export.attribution)",
        "license": LICENSES.get(settings.license, settings.license),
        "distribution": distribution,
        "recordSet": [
            {"@type": "cr:RecordSet", "@id": "examples", "name": "examples", "field": fields},
            {"@type": "cr:RecordSet", "@id": "images", "name": "images", "field": images},
        ],
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def _column(name: str) -> dict:
    return {"@type": "cr:Field", "@id": f"examples/{name}", "name": name, "dataType": "sc:Text",
            "source": {"fileObject": {"@id": "manifest.csv"}, "extract": {"column": name}}}  # fmt: skip
