"""The item catalogue (items.jsonl): dense ids 1..n, titles and attributes, with a small title search."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recbundle import BundleError


class Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    item_id: int = Field(ge=1)
    raw_id: str | int | None = None
    title: str
    description: str | None = None
    categories: list[str] = Field(default_factory=list)
    brand: str | None = None


class Catalogue:
    """Items by dense id; `items[0]` is the padding slot and stays None."""

    def __init__(self, items: list[Item]) -> None:
        self._items: list[Item | None] = [None] * (len(items) + 1)
        for item in items:
            if item.item_id > len(items) or self._items[item.item_id] is not None:
                raise BundleError(
                    f"catalogue item ids must be dense and unique in 1..{len(items)}: {item.item_id}"
                )
            self._items[item.item_id] = item
        self._lower_titles = ["" if it is None else it.title.lower() for it in self._items]
        self.title_of = ["" if it is None else it.title for it in self._items]  # dense id -> title

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
        return len(self._items) - 1

    def get(self, item_id: int) -> Item | None:
        return self._items[item_id] if 1 <= item_id <= len(self) else None

    def __getitem__(self, item_id: int) -> Item:
        item = self.get(item_id)
        if item is None:
            raise KeyError(item_id)
        return item

    def unknown(self, item_ids: list[int]) -> list[int]:
        """The ids (in order, without repeats) that are not in 1..n."""
        n = len(self)
        if not item_ids or (min(item_ids) >= 1 and max(item_ids) <= n):  # fast path, in C
            return []
        return list(dict.fromkeys(i for i in item_ids if not 1 <= i <= n))

    def search(self, query: str, limit: int) -> list[Item]:
        """Case-insensitive substring match on titles; titles starting with the query come first."""
        q = query.strip().lower()
        hits = [i for i, title in enumerate(self._lower_titles) if i and q in title]
        hits.sort(key=lambda i: (not self._lower_titles[i].startswith(q), i))
        return [self[i] for i in hits[:limit]]

    def categories(self) -> dict[int, list[str]]:
        return {it.item_id: it.categories for it in self._items if it is not None}

    def titles(self) -> list[tuple[int, str]]:
        return [(it.item_id, it.title) for it in self._items if it is not None]
