"""The end of `make demo`: serve the freshly exported bundle and print one real answer with explanations.

    python scripts/demo.py --bundle bundles/current --preset ml-100k

Starts `python -m service` on a free port (SmolLM2 as the explainer, converted on first use; in-process
session store), waits for /readyz, sends the history of a real test user to POST /v1/recommend with
k=5 and explain=true (and rerank=true when the bundle has an LLM ranker, manifest.llm.rerank), prints the
list (final rank next to retrieval rank) and the answer, and stops the server. The demo waits for the LLM:
its explanation and rerank deadlines are 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts import procs  # noqa: E402


def _request(url: str, body: dict | None = None, timeout: float = 300) -> dict:  # type: ignore[type-arg]
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return dict(json.loads(r.read()))


def test_user_history(preset: str, user: int, n: int, bundle: Path) -> list[str]:
    """A real test user's most recent items, as the catalogue's ids (what a client holds and sends)."""
    from service.index.catalogue import Catalogue
    from training import pipeline
    from training.config import load_config

    _, split = pipeline.prepare_stage(load_config(preset))
    external = Catalogue.from_jsonl(bundle / "items.jsonl").external_of
    return [external[int(i)] for i in split.test_history[user][-n:]]


def summary(answer: dict) -> str:  # type: ignore[type-arg]
    """The list as a table: final rank, rank after retrieval alone (differs where the LLM reranked)."""
    status = answer["rerank_status"]
    note = {"ok": "reranked by the bundle's LLM ranker", "disabled": "retrieval order"}.get(status, "fell back to the retrieval order")
    lines = [f"rerank_status: {status} ({note}; rerank {answer['timings_ms']['rerank']:.0f} ms), "
             f"explanation_status: {answer['explanation_status']}", "rank  retrieval rank  item  title  (+n: the LLM moved it up n places)"]  # fmt: skip
    for it in answer["items"]:
        moved = it["retrieval_rank"] - it["rank"]
        arrow = f" ({'+' if moved > 0 else ''}{moved})" if moved else ""
        lines.append(f"{it['rank']:>4}  {it['retrieval_rank']:>14}{arrow:<5} {it['item_id']:>5}  {it['title']}")
        if it["explanation"]:
            lines.append(f"{'':>27}{it['explanation']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="bundles/current")
    parser.add_argument("--preset", default="ml-100k")
    parser.add_argument("--user", type=int, default=0, help="index of the test user whose history is sent")
    parser.add_argument("--history", type=int, default=20, help="most recent items of that history sent")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--llm-backend", default="auto", help="auto (vLLM when installed), vllm or transformers")
    args = parser.parse_args()
    from recbundle import load_manifest

    history = test_user_history(args.preset, args.user, args.history, Path(args.bundle))
    llm = load_manifest(Path(args.bundle), verify=False).llm
    rerank = llm.rerank is not None
    explainer = ("tuned: the bundle's ReLRec \"explain\" adapter" if "explain" in llm.lora_adapters
                 else "zero-shot: the base LLM (the bundle has no \"explain\" adapter)")
    if llm.item_labels:
        explainer += ", with the item pseudo-labels in its prompts"
    env = {"SEQREC_LLM_BACKEND": args.llm_backend, "SEQREC_EXPLAIN_DEADLINE_MS": "180000",
           "SEQREC_RERANK_DEADLINE_MS": "180000"}
    with procs.service(env, Path(args.bundle).resolve(), main=True, timeout_s=600, omp_threads=None) as server:
        base = server.url
        body = {"history": history, "k": args.k, "explain": True, **({"rerank": True} if rerank else {})}
        answer = _request(base + "/v1/recommend", body)
        titles = [_request(f"{base}/v1/items/{i}")["title"] for i in history[-5:]]
    flags = "explain=true" + (", rerank=true" if rerank else "")
    print(f"\nPOST /v1/recommend  (test user {args.user}: {len(history)} most recent items, k={args.k}, {flags})")
    print("recent history: " + "; ".join(titles))
    print(f"explainer: {explainer}")
    print(summary(answer))
    print(json.dumps(answer, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
