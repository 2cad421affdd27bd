"""``stac_search``: the Items a STAC API search finds (through pystac-client), saved when the run
starts for the jobs to read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from msrgb.errors import PlanError
from msrgb.sources.stac import Item, StacItems, join_href, parent_of, parse_item
from msrgb.storage.locations import is_remote, is_url


@dataclass(frozen=True)
class StacSearch(StacItems):
    """The ``stac_search`` setting: the Items a STAC API search finds (POST or GET
    ``<url>/search``, page after page by the "next" links, through pystac-client), up to
    ``max_items``. ``where`` is the file the found Items are saved to when the run starts
    (:meth:`collection_text`), which the jobs read (as ``stac:<where>``, a plain
    :class:`StacItems`): they see the Items the run was planned with, and do not search again."""

    url: str = ""
    #: the search's parameters (collections, bbox, datetime, query, filter, ...), as JSON
    parameters: str = "{}"
    max_items: int = 1000

    @property
    def name(self) -> str:
        return "stac_search"

    def describe(self) -> str:
        """The search as messages name it."""
        return f"stac_search {self.url}"

    @cached_property
    def features(self) -> list[dict[str, Any]]:
        """The Items the search finds, each asset's href made absolute (against the Item's
        ``self`` link, else the API's URL) so that the saved copy resolves as they did."""
        import pystac_client
        from pystac_client.exceptions import APIError  # also for no answer, timeouts, HTTP errors

        try:
            client = pystac_client.Client.open(self.url, timeout=60)
            # POST where the API offers it (long queries, "next" links with a body), else GET
            methods = {link.extra_fields.get("method") or "GET" for link in client.get_links("search")}
            method = "POST" if "POST" in methods or not methods else "GET"
            search = client.search(method=method, max_items=self.max_items, **json.loads(self.parameters))
            found = list(search.items_as_dicts())
        except (APIError, OSError, ValueError, TypeError, NotImplementedError) as exc:
            raise PlanError(f"{self.describe()}: the search failed: {str(exc).strip()[:500]}") from exc
        for feature in found:
            base = _self_href(feature) or f"{self.url.rstrip('/')}/search"
            for asset in (feature.get("assets") or {}).values():
                if isinstance(asset, dict) and isinstance(asset.get("href"), str):
                    asset["href"] = _absolute(asset["href"], base)
        return found

    def collection_text(self) -> str:
        """The found Items as an ItemCollection, for :attr:`where`."""
        return json.dumps({"type": "FeatureCollection", "features": self.features}, indent=1) + "\n"

    @cached_property
    def items(self) -> dict[str, Item]:
        found: dict[str, Item] = {}
        for feature in self.features:
            item = parse_item(feature, ".", self.describe())
            if item.id in found:
                raise PlanError(f"{self.describe()}: two Items have the id {item.id!r}")
            found[item.id] = item
        return found


def _self_href(feature: Mapping[str, Any]) -> str | None:
    for link in feature.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "self" and isinstance(link.get("href"), str):
            return str(link["href"])
    return None


def _absolute(href: str, base: str) -> str:
    """``href`` joined to the document ``base`` it was read from, unless it is absolute."""
    if is_remote(href) or is_url(href) or href.startswith("file://") or os.path.isabs(href):
        return href
    return join_href(parent_of(base), href)
