"""The item catalogue (items.jsonl): the catalogue's own item ids, the bundle's dense ids 1..n, titles and
attributes, with a small title search.

Clients speak the catalogue's ids (`raw_id`: MovieLens ids, ASINs), always as strings; dense ids are the
model's row numbers and never leave the service, because every retrain renumbers them. A row without a dense
id (`item_id` null) is an item the catalogue knows and the model does not (a cold-start row): it can be looked
up, never recommended, and a history holding it is handled as the manifest's `cold_items` says."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recbundle import BundleError


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    item_id: int | None = Field(None, ge=1)  # dense id; None: in the catalogue, not in the model
    raw_id: str | int | None = None
    title: str
    description: str | None = None
    categories: list[str] = Field(default_factory=list)
    brand: str | None = None

    @property
    def external_id(self) -> str:
        """The id clients use: the catalogue's own (`raw_id`), or the dense id for catalogues without one."""
        return str(self.raw_id if self.raw_id is not None else self.item_id)


class Catalogue:
    """Items by dense id (`items[0]` is the padding slot and stays None) and by external id."""

    def __init__(self, items: list[Item]) -> None:
        modelled = [it for it in items if it.item_id is not None]
        self._items: list[Item | None] = [None] * (len(modelled) + 1)
        for item in modelled:
            assert item.item_id is not None
            if item.item_id > len(modelled) or self._items[item.item_id] is not None:
                raise BundleError(
                    f"catalogue item ids must be dense and unique in 1..{len(modelled)}: {item.item_id}"
                )
            self._items[item.item_id] = item
        self.dense_of: dict[str, int] = {}  # external id -> dense id
        self.cold: dict[str, Item] = {}  # external id -> item the model has no row for
        for item in items:
            ext = item.external_id
            if ext in self.dense_of or ext in self.cold:
                raise BundleError(f"catalogue id {ext!r} appears twice: raw_id must be unique")
            if item.item_id is None:
                self.cold[ext] = item
            else:
                self.dense_of[ext] = item.item_id
        self._lower_titles = ["" if it is None else it.title.lower() for it in self._items]
        self.title_of = ["" if it is None else it.title for it in self._items]  # dense id -> title
        self.external_of = ["" if it is None else it.external_id for it in self._items]  # dense -> external

    @classmethod
    def from_jsonl(cls, path: Path) -> Catalogue:
        items: list[Item] = []
        with path.open() as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    items.append(Item.model_validate(json.loads(line)))
                except (json.JSONDecodeError, ValidationError) as e:
                    raise BundleError(f"{path.name} line {line_no} is not a valid item: {e}") from e
        return cls(items)

    def __len__(self) -> int:
        """Items the model ranks (dense ids 1..n); cold-start rows are not counted."""
        return len(self._items) - 1

    def get(self, item_id: int) -> Item | None:
        return self._items[item_id] if 1 <= item_id <= len(self) else None

    def __getitem__(self, item_id: int) -> Item:
        item = self.get(item_id)
        if item is None:
            raise KeyError(item_id)
        return item

    def lookup(self, external_id: str) -> Item | None:
        """An item by its catalogue id, modelled or cold."""
        dense = self.dense_of.get(external_id)
        return self._items[dense] if dense is not None else self.cold.get(external_id)

    def search(self, query: str, limit: int) -> list[Item]:
        """Case-insensitive substring match on titles; titles starting with the query come first."""
        q = query.strip().lower()
        hits = [i for i, title in enumerate(self._lower_titles) if i and q in title]
        hits.sort(key=lambda i: (not self._lower_titles[i].startswith(q), i))
        return [self[i] for i in hits[:limit]]

    def categories(self) -> dict[int, list[str]]:
        return {it.item_id: it.categories for it in self._items if it is not None and it.item_id is not None}

    def titles(self) -> list[tuple[int, str]]:
        return [(it.item_id, it.title) for it in self._items if it is not None and it.item_id is not None]
