"""The ``products`` setting parsed into :class:`~msrgb.config.products.Product` values: presets
merged with what a specification overrides, bands, stretches, expressions, offsets, checked
with messages that name the product and the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from msrgb.config.presets import (
    _GAIN_4000,
    DEFAULTS,
    EUROSAT_BANDS,
    OLD_FIELD_NAMES,
    PRESETS,
    PRODUCT_KEYS,
    STRETCH_KEYS,
    default,
)
from msrgb.config.products import Product
from msrgb.errors import ExpressionError, ProductError
from msrgb.radiometry.scaling import settings_for


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProductError(f"product {name!r}: {key!r} must be a number, got {value!r}")
    return float(value)


def parse_products(
    spec: Sequence[str] | Mapping[str, Mapping[str, Any] | None],
    band_map: Sequence[str] = EUROSAT_BANDS,
    png_compression: str = default("png_compression"),
    max_size: int | None = None,
    resampling: str = default("resampling"),
    offset: float | Mapping[str, float] | None = None,
    scale: float | Mapping[str, float] | None = None,
) -> list[Product]:
    """Turn the ``products`` config value (a list of preset names or a mapping of name to
    specification) into products, with errors that name the product and the key. ``offset``
    and ``scale``: the top-level radiometric settings, which a product's own override. The
    schema (config/schema.json) has checked the types; the values are checked by
    :class:`Product`."""
    products = []
    for name, body in _items(spec):
        body = _with_preset(name, body)
        body["bands"] = _bands_of(name, body, band_map)
        stretch_spec = body["stretch"]
        fields: dict[str, Any] = {
            field_name: stretch_spec.get(key.partition(".")[2], value)
            for key, (field_name, value) in DEFAULTS.items()
            if key.startswith("stretch.")
        }
        for key in ("stretch.min", "stretch.max", "stretch.low", "stretch.high", "stretch.gamma", "stretch.scale"):
            field_name = DEFAULTS[key][0]
            fields[field_name] = _number(name, key, fields[field_name])
        for key in ("stretch.out_min", "stretch.sample"):
            fields[DEFAULTS[key][0]] = int(_number(name, key, fields[DEFAULTS[key][0]]))
        if fields["stretch"] == "range" and ("min" not in stretch_spec or "max" not in stretch_spec):
            raise ProductError(f"product {name!r}: a 'range' stretch needs 'stretch.min' and 'stretch.max'")
        products.append(
            Product(
                name=name,
                bands=tuple(body["bands"]),
                band_map=tuple(body.get("band_map") or band_map),
                bit_depth=int(_number(name, "bit_depth", body.get("bit_depth", default("bit_depth")))),
                nodata=_nodata(name, body.get("nodata")),
                world_file=bool(body.get("world_file", False)),
                png_compression=png_compression,
                max_size=max_size,
                resampling=resampling,
                expression=body.get("expression"),
                colormap=body.get("colormap"),
                range=_value_range(name, body.get("range", default("range"))),
                format=str(body.get("format", default("format"))),
                quality=int(_number(name, "quality", body.get("quality", default("quality")))),
                radiometry=_radiometry(name, body.get("offset", offset), body.get("scale", scale), body),
                **fields,
            )
        )
    if not products:
        raise ProductError("'products' is empty: name at least one product")
    return products


def _items(spec: Sequence[str] | Mapping[str, Mapping[str, Any] | None]) -> list[tuple[str, Any]]:
    """(name, specification) of each product: a list names presets."""
    if isinstance(spec, Mapping):
        return list(spec.items())
    for name in spec:
        if name not in PRESETS:
            raise ProductError(f"unknown product preset {name!r}; presets are {sorted(PRESETS)}")
    return [(name, PRESETS[name]) for name in spec]


def _with_preset(name: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The specification merged over its preset (``preset``, or the preset of the same name); a
    stretch of another type than the preset's drops the preset's stretch numbers."""
    body = dict(given or {})
    unknown = sorted(set(body) - set(PRODUCT_KEYS))
    if unknown:
        raise ProductError(f"product {name!r}: unknown key(s) {unknown}; known: {list(PRODUCT_KEYS)}")
    preset = body.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ProductError(f"product {name!r}: unknown 'preset' {preset!r}; presets are {sorted(PRESETS)}")
    base = PRESETS[preset] if preset is not None else PRESETS.get(name, {})
    stretch_spec = {**base.get("stretch", {} if "expression" in base or "expression" in body else _GAIN_4000)}
    if "stretch" in body:
        given_stretch = dict(body["stretch"] or {})
        if "type" in given_stretch and given_stretch["type"] != stretch_spec.get("type"):
            stretch_spec = {}  # another stretch: the preset's numbers do not apply
        stretch_spec.update(given_stretch)
    unknown = sorted(set(stretch_spec) - set(STRETCH_KEYS))
    if unknown:
        raise ProductError(f"product {name!r}: unknown 'stretch' key(s) {unknown}; known: {list(STRETCH_KEYS)}")
    return {**base, **body, "stretch": stretch_spec}


def _bands_of(name: str, body: Mapping[str, Any], band_map: Sequence[str]) -> list[str]:
    """The bands a product reads: its ``bands``, or those its expression uses."""
    expression = body.get("expression")
    if expression is not None:
        from msrgb.config.expression import parse

        if not isinstance(expression, str):
            raise ProductError(f"product {name!r}: 'expression' must be text, got {expression!r}")
        try:
            return list(parse(expression, body.get("band_map") or band_map).bands)
        except ExpressionError as exc:
            raise ProductError(f"product {name!r}: 'expression' {exc}") from None
    if "bands" not in body:
        raise ProductError(f"product {name!r}: 'bands' is missing")
    return list(body["bands"])


def _nodata(name: str, nodata: Any) -> float | str | None:
    return nodata if nodata is None or nodata == "file" else _number(name, "nodata", nodata)


def _value_range(name: str, value_range: Any) -> tuple[float, float]:
    if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
        raise ProductError(f"product {name!r}: 'range' must be [low, high], got {value_range!r}")
    return _number(name, "range", value_range[0]), _number(name, "range", value_range[1])


def _radiometry(
    name: str, offset: Any, scale: Any, body: Mapping[str, Any]
) -> tuple[tuple[str, float, float], ...]:
    """The product's (band, scale, offset) from the ``offset``/``scale`` settings: a number
    for every band, or band name -> number."""
    band_map = body.get("band_map") or EUROSAT_BANDS
    for key, value in (("offset", offset), ("scale", scale)):
        items = value.items() if isinstance(value, Mapping) else [] if value is None else [("", value)]
        for band, number in items:
            where = f"{key}.{band}" if band else key
            _number(name, where, number)
            if band and band not in band_map:
                raise ProductError(
                    f"product {name!r}: {where!r} names an unknown band; bands are {list(band_map)}"
                )
    return settings_for(offset, scale, body["bands"])


def products_from_dicts(dicts: Sequence[Mapping[str, Any]]) -> list[Product]:
    """Rebuild products from :meth:`Product.to_dict` output (used to pass them to jobs)."""
    products = []
    for d in dicts:
        d = dict(d)
        d["bands"] = tuple(d["bands"])
        d["band_map"] = tuple(d["band_map"])
        for old, new in OLD_FIELD_NAMES.items():  # products.json of versions before 0.6.0
            if old in d:
                d[new] = d.pop(old)
        if "range" in d:
            d["range"] = tuple(d["range"])
        if d.get("limits") is not None:
            d["limits"] = tuple(tuple(x) for x in d["limits"])
        d["radiometry"] = tuple(tuple(x) for x in d.get("radiometry", ()))
        products.append(Product(**d))
    return products


def check_band_count(products: Sequence[Product], count: int, example: str) -> None:
    """Fail at start-up when a product needs a band the input files do not have (``example``
    is the file whose ``count`` bands were looked at)."""
    for p in products:
        for band, index in zip(p.bands, p.indices):
            if index >= count:
                raise ProductError(
                    f"product {p.name!r}: 'bands' names {band}, band {index + 1} of the band "
                    f"map, but {example} has only {count} band(s); fix 'bands' or 'band_map' "
                    f"(the file's bands in order, such as band_map: [B04, B03, B02] for an RGB "
                    "file; docs/products.md)"
                )
