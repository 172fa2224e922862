"""The explanation prompt: the user's recent items by title, the recommended item's attributes."""

from __future__ import annotations

from service.index.catalogue import Item

SYSTEM = (
    "You write one short sentence, addressed to the user, explaining a recommendation. Connect it to a title "
    "the user liked. Mention no titles other than those given."
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
        f"The user liked: {history}.\n"
        f"We recommend: {describe(recommended)}.\n"
        f'Why might they enjoy "{recommended.title}"? Name one title they liked.'
    )
