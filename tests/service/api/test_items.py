from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.service.bundle_factory import build_bundle
from tests.service.conftest import ClientFactory
from tests.service.ids import dense_items, ext, exts


def test_get_item(client: TestClient) -> None:
    body = client.get(f"/v1/items/{ext(41)}").json()
    assert body["title"] == "Toy Story (1995)" and body["categories"] == ["Animation"]
    assert body["item_id"] == ext(41) and body["in_model"] is True


def test_title_search(client: TestClient) -> None:
    titles = [it["title"] for it in client.get("/v1/items", params={"q": "the"}).json()["items"]]
    assert titles[0].startswith("The ")  # prefix matches first
    assert "Usual Suspects, The (1995)" in titles
    assert client.get("/v1/items", params={"q": "TOY"}).json()["items"][0]["item_id"] == ext(41)
    assert len(client.get("/v1/items", params={"q": "(19", "limit": 7}).json()["items"]) == 7
    assert client.get("/v1/items", params={"q": "zzz"}).json()["items"] == []


def test_cold_start_rows_follow_the_bundle(make_client: ClientFactory, tmp_path: Path) -> None:
    """Items in the catalogue but not in the model: looked up, never recommended, and skipped in a history
    (listed in ignored_items) or refused, as the bundle's manifest says."""
    for policy in ("skip", "reject"):
        root = tmp_path / policy
        build_bundle(root, cold_raw_ids=[ext(45)], cold_items=policy)  # type: ignore[arg-type]
        with make_client(bundle_dir=root) as client:
            item = client.get(f"/v1/items/{ext(45)}").json()
            assert item["in_model"] is False and item["title"]
            r = client.post("/v1/recommend", json={"history": exts([41, 45, 42]), "k": 48})
            if policy == "skip":
                body = r.json()
                assert r.status_code == 200 and body["ignored_items"] == [ext(45)]
                assert 45 not in dense_items(body) and len(body["items"]) == 47  # 49 modelled - 2 seen
                only_cold = client.post("/v1/recommend", json={"history": exts([45])})
                assert only_cold.status_code == 422 and "no item of the history" in only_cold.text
            else:
                assert r.status_code == 422 and r.json()["error"]["details"] == {"cold": [ext(45)]}
