"""Explanation quality report: the zero-shot and the tuned explainer of one bundle on real test users.

    python scripts/explain_report.py --bundle bundles/current --users 100 --k 5 --publish docs/results

For each of `--users` test users of the bundle's dataset (a seeded sample; the newest `--history` items of
the history the test target follows, as a client would send them): the bundle's retrieval top-k (the served
ranking), then the service's own Explainer (prompts, answer prefix, anchors, post-check, one sampled retry)
on the transformers backend, once with the base weights ("zero_shot") and once with the bundle's "explain"
adapter ("tuned", ReLRec; absent when the bundle has none). Two rows per explainer:
- `first_pass`: the greedy texts before the post-check (what the model writes);
- `served`: what a client gets (post-check, retry, drop): coverage is the share of items with a text.
Measures (service/core/explain_quality.py): grounded, attribute claims true, degenerate, duplicate, mean
words; latency per answer (k texts in one batch, retry included; no deadline, so nothing is cut); and the
stream check: for the first `--stream-users` users, the streamed pieces joined exactly equal the batch
answer of the same single prompt (no text joined inside a word).
Writes explanations-<preset>.json (shaped like metrics.json: rows -> metric -> mean/std/seeds) and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from bench_rerank import preset_of  # noqa: E402

from service.core.explain import Explainer, Explanations, lead  # noqa: E402
from service.core.explain_quality import TextQuality, answer_quality, summarise  # noqa: E402
from service.core.recommender import Recommender  # noqa: E402
from service.index.bundle import Bundle, load_bundle  # noqa: E402
from service.llm.base import EXPLAIN_ADAPTER  # noqa: E402
from service.llm.loader import resolve_dtype  # noqa: E402
from service.metrics.registry import Metrics  # noqa: E402
from service.sessions.memory import InMemoryStore  # noqa: E402
from service.settings import Settings  # noqa: E402

log = logging.getLogger("explain_report")
MEASURES = ("coverage", "grounded", "attributes_true", "attributes_true_when_claimed", "has_claim",
            "degenerate", "duplicate", "mean_words")


def test_histories(preset: str, n_users: int, n_items: int, seed: int = 0) -> list[tuple[int, list[int]]]:
    """(user, newest `n_items` of the history before the test target) for a seeded sample of test users."""
    import numpy as np

    from training import pipeline
    from training.config import load_config

    _, split = pipeline.prepare_stage(load_config(preset))
    users = [u for u in range(split.n_users) if len(split.test_history[u]) > 0]
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(users, size=min(n_users, len(users)), replace=False).tolist())
    return [(int(u), [int(i) for i in split.test_history[u][-n_items:]]) for u in picked]


def load_backend(bundle: Bundle, settings: Settings, tuned: bool) -> Any:
    from service.llm.transformers_backend import TransformersBackend

    llm = bundle.manifest.llm
    dtype = resolve_dtype(settings.llm_dtype, "transformers", settings.llm_device, rerank=llm.rerank is not None)
    adapters = {EXPLAIN_ADAPTER: bundle.root / llm.lora_adapters[EXPLAIN_ADAPTER]} if tuned else {}
    return TransformersBackend.load(llm.base or settings.llm_model, settings.llm_device, dtype, None, None, adapters), dtype


def report_explainer(bundle: Bundle, settings: Settings, backend: Any, max_new_tokens: int, labels: bool,
                     on_attempt: Any = None) -> Explainer:
    """The service's Explainer on `backend`, with no deadline (nothing is cut) and a private cache."""
    return Explainer(
        backend, "ok", InMemoryStore(max_len=200, ttl_s=3600), bundle.catalogue, bundle.bundle_id, Metrics(),
        deadline_ms=600_000, max_new_tokens=max_new_tokens, history_items=settings.explain_history_items,
        cache_ttl_s=1, item_embeddings=bundle.item_embeddings, item_labels=bundle.item_labels if labels else {},
        on_attempt=on_attempt,
    )  # fmt: skip


async def served_rankings(bundle: Bundle, settings: Settings, users: list[tuple[int, list[int]]],
                          k: int) -> dict[int, list[int]]:
    """Each user's retrieval top-k, as the service ranks it (seen items excluded)."""
    recommender = Recommender(bundle, Metrics(), fanout=settings.retrieval_fanout)
    ranked = {u: [i for i, _ in (await recommender.rank(h, k, exclude_seen=True)).items] for u, h in users}
    await recommender.close()
    return ranked


async def stream_check(explainer: Explainer, backend: Any, users: list[tuple[int, list[int]]],
                       ranked: dict[int, list[int]], max_new_tokens: int) -> dict[str, float]:
    """Share of prompts whose streamed pieces, joined exactly, equal the batch answer of the same prompt, both
    as they follow the answer prefix (`lead`: backends strip batch answers, a stream starts with a space)."""
    same = total = 0
    for user, history in users:
        for item in ranked[user]:
            prompt, _ = explainer.prompt(backend, history, item)
            deadline = time.monotonic() + 600
            batch = (await backend.generate([prompt], max_new_tokens, deadline)).texts[0]
            streamed = "".join([p async for p in backend.stream(prompt, max_new_tokens, deadline)])
            same += lead(streamed).rstrip() == lead(batch)
            total += 1
    return {"prompts": float(total), "stream_equals_batch": same / max(total, 1)}


async def run_explainer(name: str, bundle: Bundle, settings: Settings, users: list[tuple[int, list[int]]],
                        ranked: dict[int, list[int]], args: argparse.Namespace) -> dict[str, Any]:
    backend, dtype = await asyncio.to_thread(load_backend, bundle, settings, name == "tuned")
    first: dict[int, Explanations] = {}
    user_of = {tuple(h): u for u, h in users}

    def on_attempt(attempt: int, history: list[int], texts: Explanations) -> None:
        if attempt == 0:
            first[user_of[tuple(history)]] = dict(texts)

    explainer = report_explainer(bundle, settings, backend, args.max_new_tokens, not args.no_labels, on_attempt)
    served: dict[int, Explanations] = {}
    latency: list[float] = []
    for n, (user, history) in enumerate(users):
        t0 = time.perf_counter()
        texts, status = await explainer.explain(history, ranked[user])
        latency.append((time.perf_counter() - t0) * 1000)
        if status != "ok":
            raise SystemExit(f"user {user}: explanation status {status}")
        served[user] = texts
        if n % 10 == 0:
            log.info("%s: %d/%d users, last answer %.0f ms", name, n + 1, len(users), latency[-1])
    qual_first: list[TextQuality] = []
    qual_served: list[TextQuality] = []
    examples = []
    for user, history in users:
        q1 = answer_quality(explainer, history, first[user])
        q2 = answer_quality(explainer, history, served[user])
        qual_first += list(q1.values())
        qual_served += list(q2.values())
        for item in ranked[user][:1]:
            examples.append({"user": user, "item": item, "title": bundle.catalogue[item].title,
                             "categories": bundle.catalogue[item].categories, "first_pass": first[user][item],
                             "served": served[user][item], "first_pass_false_claims": q1[item].false_claims})
    streams = await stream_check(explainer, backend, users[: args.stream_users], ranked, args.max_new_tokens)
    await backend.aclose()
    return {"dtype": dtype, "first_pass": summarise(qual_first), "served": summarise(qual_served),
            "latency_ms": {"p50": statistics.median(latency), "p90": sorted(latency)[int(0.9 * (len(latency) - 1))],
                           "mean": statistics.fmean(latency)},
            "stream": streams, "examples": examples[: args.examples],
            "vocabulary_size": len(explainer.attributes.vocabulary)}


def _cell(v: float) -> dict[str, Any]:
    return {"mean": v, "std": 0.0, "seeds": [v]}


def table(results: dict[str, dict[str, Any]]) -> str:
    head = "| explainer | pass | coverage | grounded | attributes true | (of texts with a claim) | has claim | degenerate | duplicate | words | p50 ms / answer |"
    lines = [head, "|---|---|" + "---:|" * 9]
    for name, r in results.items():
        for row in ("first_pass", "served"):
            m = r[row]
            lat = f"{r['latency_ms']['p50']:.0f}" if row == "served" else ""
            lines.append(f"| {name} | {row} | {m['coverage']:.3f} | {m['grounded']:.3f} | {m['attributes_true']:.3f} | "
                         f"{m['attributes_true_when_claimed']:.3f} | {m['has_claim']:.3f} | {m['degenerate']:.3f} | "
                         f"{m['duplicate']:.3f} | {m['mean_words']:.1f} | {lat} |")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    c = report["config"]
    lines = [f"# Explanation quality: {report['preset']}", "",
             f"`{report['command']}`", "",
             f"Bundle `{c['bundle_id']}`; {c['users']} test users (seed {c['seed']}), k={c['k']}, the newest "
             f"{c['history']} history items sent; {c['max_new_tokens']} new tokens at most; transformers backend "
             f"({c['device']}); item labels in prompts: {c['labels_in_prompt']} (source: {c['label_source']}).", ""]
    if c.get("label_source") == "metadata":
        lines += ["**Item labels are FALLBACK labels** (genres, era, title words): this dataset has no reviews.", ""]
    if c.get("note"):
        lines += [f"**{c['note']}**", ""]
    lines += [report["table"], "",
              "- first_pass: the greedy texts before the post-check; served: after the post-check (titles outside "
              "history and recommendation, false category claims), one sampled retry, and drop. Coverage: share of "
              "the k items with a text; the other shares are over the texts present.",
              "- attribute claims: catalogue categories (service/core/attributes.py: the catalogue's category "
              f"vocabulary, {c['vocabulary_size']} terms); other adjectives are not checked.",
              "- stream check (no text joined inside a word; streamed pieces joined exactly vs the batch answer of the "
              "same prompt, both as they follow the answer prefix)"
              + (f" (rerun: `{report['stream_command']}`)" if report.get("stream_command") else "") + ": " + "; ".join(
                  f"{n}: {r['stream']['stream_equals_batch']:.3f} of {r['stream']['prompts']:.0f} prompts" for n, r in report["explainers"].items()),
              "", "## Examples (first recommended item of the first users)", ""]
    for name, r in report["explainers"].items():
        for e in r["examples"]:
            lines.append(f"- {name}, \"{e['title']}\" ({', '.join(e['categories'])}): first pass: {e['first_pass']!r}"
                         f"{' (false: ' + ', '.join(e['first_pass_false_claims']) + ')' if e['first_pass_false_claims'] else ''}"
                         f"; served: {e['served']!r}")
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    bundle = load_bundle(Path(args.bundle).resolve())
    preset = args.preset or preset_of(bundle.bundle_id)
    users = test_histories(preset, args.users, args.history, args.seed)
    ranked = await served_rankings(bundle, settings, users, args.k)
    names = ["zero_shot"] + (["tuned"] if EXPLAIN_ADAPTER in bundle.manifest.llm.lora_adapters else [])
    names = [n for n in names if n in args.explainers]
    results = {n: await run_explainer(n, bundle, settings, users, ranked, args) for n in names}
    report: dict[str, Any] = {
        "preset": preset,
        "command": "python scripts/explain_report.py " + " ".join(sys.argv[1:]),
        "config": {"bundle_id": bundle.bundle_id, "users": len(users), "seed": args.seed, "k": args.k,
                   "history": args.history, "max_new_tokens": args.max_new_tokens, "device": settings.llm_device,
                   "labels_in_prompt": bool(bundle.item_labels) and not args.no_labels,
                   "label_source": bundle.item_labels_source, "vocabulary_size": next(iter(results.values()))["vocabulary_size"] if results else 0,
                   "note": args.note},
        "rows": {n: {p: {m: _cell(r[p][m]) for m in MEASURES} | ({"latency_ms_p50": _cell(r["latency_ms"]["p50"])} if p == "served" else {})
                     for p in ("first_pass", "served")} for n, r in results.items()},
        "explainers": results,
    }
    report["table"] = table(results)
    return report


async def rerun_streams(report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The stream check of an existing report again, on its bundle and users (the measures are kept)."""
    settings = Settings()
    c = report["config"]
    bundle = load_bundle(Path(args.bundle).resolve())
    if bundle.bundle_id != c["bundle_id"]:
        raise SystemExit(f"the report is of bundle {c['bundle_id']}, not {bundle.bundle_id}")
    users = test_histories(report["preset"], c["users"], c["history"], c["seed"])[: args.stream_users]
    ranked = await served_rankings(bundle, settings, users, c["k"])
    for name, r in report["explainers"].items():
        backend, _ = await asyncio.to_thread(load_backend, bundle, settings, name == "tuned")
        explainer = report_explainer(bundle, settings, backend, c["max_new_tokens"], c["labels_in_prompt"])
        r["stream"] = await stream_check(explainer, backend, users, ranked, c["max_new_tokens"])
        await backend.aclose()
    report["stream_command"] = "python scripts/explain_report.py " + " ".join(sys.argv[1:])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default="bundles/current")
    parser.add_argument("--preset", default=None, help="the bundle's training preset (default: from its id)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--stream-users", type=int, default=5)
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--explainers", nargs="+", default=["zero_shot", "tuned"])
    parser.add_argument("--no-labels", action="store_true", help="prompts without the bundle's item labels")
    parser.add_argument("--note", default="", help="a line the report prints in bold (e.g. REDUCED: ...)")
    parser.add_argument("--name", default=None, help="report name (default: explanations-<preset>)")
    parser.add_argument("--publish", default=None, help="folder for <name>.json and <name>.md")
    parser.add_argument("--stream-only", default=None, metavar="REPORT_JSON",
                        help="rerun only the stream check of this report (same bundle and users) and rewrite it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.stream_only:
        path = Path(args.stream_only)
        report = asyncio.run(rerun_streams(json.loads(path.read_text()), args))
        path.write_text(json.dumps(report, indent=1, default=str))
        path.with_suffix(".md").write_text(markdown(report))
        print({n: r["stream"] for n, r in report["explainers"].items()})
        return
    report = asyncio.run(main_async(args))
    print(report["table"])
    if args.publish:
        out = Path(args.publish)
        out.mkdir(parents=True, exist_ok=True)
        name = args.name or f"explanations-{report['preset']}"
        (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str))
        (out / f"{name}.md").write_text(markdown(report))
        print(f"wrote {out / name}.json and .md")


if __name__ == "__main__":
    main()
