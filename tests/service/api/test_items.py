from __future__ import annotations

from fastapi.testclient import TestClient


def test_get_item(client: TestClient) -> None:
    body = client.get("/v1/items/41").json()
    assert body["title"] == "Toy Story (1995)" and body["categories"] == ["Animation"]


def test_title_search(client: TestClient) -> None:
    titles = [it["title"] for it in client.get("/v1/items", params={"q": "the"}).json()["items"]]
    assert titles[0].startswith("The ")  # prefix matches first
    assert "Usual Suspects, The (1995)" in titles
    assert client.get("/v1/items", params={"q": "TOY"}).json()["items"][0]["item_id"] == 41
    assert len(client.get("/v1/items", params={"q": "(19", "limit": 7}).json()["items"]) == 7
    assert client.get("/v1/items", params={"q": "zzz"}).json()["items"] == []
