"""Which bundle adapters the engine gets: "explain" unless the operator serves base-weight explanations."""

from __future__ import annotations

from pathlib import Path

from recbundle import LLMRef, Manifest, RerankSpec
from recbundle.manifest import EncoderRef, IndexRef
from service.llm.loader import bundle_adapters


def manifest(llm: LLMRef) -> Manifest:
    return Manifest(bundle_id="b", created_at="2026-01-01T00:00:00Z", dataset="d", n_items=3,
                    encoder=EncoderRef(kind="sasrec", max_len=5, dim=4),
                    index=IndexRef(type="Flat", n_items=3, dim=4), llm=llm)


def test_explain_and_rerank_adapters_by_setting(tmp_path: Path) -> None:
    llm = LLMRef(lora_adapters={"explain": "llm/explain", "rerank": "llm/rerank", "other": "llm/x"},
                 rerank=RerankSpec(adapter="rerank", soft_prompt=False))
    m = manifest(llm)
    assert bundle_adapters(m, tmp_path) == {"explain": tmp_path / "llm/explain", "rerank": tmp_path / "llm/rerank"}
    assert bundle_adapters(m, tmp_path, explain=False) == {"rerank": tmp_path / "llm/rerank"}
    assert bundle_adapters(manifest(LLMRef()), tmp_path) == {}
