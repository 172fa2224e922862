"""The explanation prompt: the user's recent items by title, the recommended item's attributes."""

from __future__ import annotations

from service.index.catalogue import Item

SYSTEM = (
    "You explain recommendations in one or two short sentences. Refer to the titles the user interacted "
    "with. Never mention any other title besides those and the recommended one."
)


def describe(item: Item) -> str:
    parts = [f'"{item.title}"']
    if item.categories:
        parts.append(f"(categories: {', '.join(item.categories)})")
    if item.brand:
        parts.append(f"by {item.brand}")
    return " ".join(parts)


def user_prompt(recent: list[Item], recommended: Item) -> str:
    history = "; ".join(describe(it) for it in recent)
    return (
        f"The user recently interacted with, oldest first: {history}.\n"
        f"Recommended item: {describe(recommended)}.\n"
        f'Explain why the user may like "{recommended.title}", naming at least one title they interacted with.'
    )
