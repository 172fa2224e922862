"""`python -m training relrec`: ReLRec on a preset (Na et al., Findings of EMNLP 2024), end to end.

    python -m training relrec --preset relrec-cpu-magazine --export-to bundles  # REDUCED: hours on this CPU
    python -m training relrec --preset relrec-magazine --publish docs/results   # Amazon Magazine (GPU-sized)
    python -m training relrec --preset relrec-giftcards                         # Amazon Gift Cards
    python -m training relrec --preset relrec-ml100k                            # ML-100K, fallback labels
    python -m training relrec --preset relrec-tiny                              # CI: a random tiny LLM

prepare -> teacher (the preset's SASRec, or `relrec.teacher_preset`'s; DELRec's helpers) -> the SASRec cand20
row per seed on the same questions -> `run_relrec` (labels, plain fine-tune, ReLRec, cand20, language) ->
label quality (lexical, against held-out reviews) -> relrec_report.md / .json / .png -> optionally a service
bundle: the teacher's encoder and index, the best seed's ReLRec adapter as the "explain" adapter, and the item
pseudo-labels it learned to reconstruct.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training import pipeline
from training.config import REPO_ROOT, RunConfig
from training.data.types import SequenceDataset, Split
from training.llm.core.cache import cached, fingerprint_of
from training.llm.delrec import pipeline as delrec_pipeline
from training.llm.delrec.chain import ensure_teacher, teacher_cand_scores, teacher_config
from training.llm.delrec.config import DelRecConfig
from training.llm.delrec.evaluate import cand_metrics
from training.llm.relrec.config import RelRecConfig, relrec_config
from training.llm.relrec.labels import PseudoLabels
from training.llm.relrec.pipeline import (
    Questions,
    build_questions,
    inputs_fingerprint,
    labels_stage,
    run_relrec,
    tune_stage,
)
from training.llm.relrec.quality import QualityConfig, label_quality
from training.train import distributed

if TYPE_CHECKING:
    from recbundle import LLMRef

log = logging.getLogger(__name__)
ITEM_LABELS = "llm/item_labels.json"


@dataclass
class RelRecRun:
    cfg: RunConfig
    rcfg: RelRecConfig
    report: dict[str, Any]  # the report JSON (rows shaped like metrics.json, plus the language figures)
    best_seed: int
    adapter: Path  # the best seed's ReLRec LoRA folder
    labels: PseudoLabels
    teacher_cfg: RunConfig
    teacher_seed: int


def relrec_teacher_config(cfg: RunConfig, rcfg: RelRecConfig) -> RunConfig:
    """DELRec's rule: `teacher_preset`'s run config when set (it must prepare the same data), else `cfg`."""
    return teacher_config(cfg, DelRecConfig(teacher_preset=rcfg.teacher_preset))  # it reads teacher_preset only


def _sasrec_rows(tcfg: RunConfig, split: Split, q: Questions, seeds: list[int]) -> list[dict[str, float]]:
    """Per ReLRec seed, the teacher trained with that seed on the same cand20 test questions."""
    dq = delrec_pipeline.Questions(q.train_users, q.valid, q.test, [], [])  # DELRec's scorer reads valid/test
    scores = teacher_cand_scores(tcfg, split, dq, seeds)
    return [cand_metrics(scores[s]["test"], q.test) for s in seeds]


def quality_stage(ds: SequenceDataset, split: Split, labels: tuple[PseudoLabels, Path], inputs_fp: str,
                  root: Path) -> dict[str, Any]:
    """Lexical held-out support of the labels and its other-entity control (quality.py); no MiniLM, so it
    costs seconds. The semantic figures come from `python -m training.llm.relrec.quality`."""
    qcfg = QualityConfig()

    def compute(d: Path) -> None:
        (d / "quality.json").write_text(json.dumps(label_quality(ds, split, labels[0], qcfg), indent=1))

    quality, _ = cached("relrec_label_quality", {"labels": fingerprint_of(labels[1]), "q": asdict(qcfg)},
                        inputs_fp, root, compute, lambda d: json.loads((d / "quality.json").read_text()))
    return quality


def _best_seed(relrec: dict[str, dict[str, Any]]) -> int:
    """Highest validation HR@1 of the ReLRec adapter (a missing / NaN figure counts as -1), then lowest seed."""
    def key(s: str) -> tuple[float, int]:
        v = relrec[s]["relrec"]["tune"].get("best_valid_hr1")
        return (v if isinstance(v, float) and v == v else -1.0, -int(s))

    return int(max(relrec, key=key))


def run_chain(cfg: RunConfig, ds: SequenceDataset, split: Split, command: str = "") -> RelRecRun:
    from training.llm.relrec.report import build_report

    rcfg = relrec_config(cfg)
    tcfg = relrec_teacher_config(cfg, rcfg)
    _, _, teacher_seed = ensure_teacher(tcfg, split)
    delrec_pipeline.set_threads()
    q = build_questions(rcfg, split, cfg.eval.protocol_seed)  # the questions run_relrec builds, too
    sasrec = _sasrec_rows(tcfg, split, q, cfg.eval.seeds)
    root = pipeline.output_dir(cfg) / "relrec"
    inputs = inputs_fingerprint(ds, split)
    labels = labels_stage(rcfg, ds, split, inputs, root)
    quality = quality_stage(ds, split, labels, inputs, root)
    relrec = run_relrec(rcfg, cfg, ds, split, root)
    best = _best_seed(relrec["per_seed"])
    titles: list[str | None] = [None] + [m.title for m in ds.items]
    adapter = tune_stage(rcfg, best, split, q, titles, labels, True, inputs, root)  # cached by run_relrec
    report = distributed.on_main(build_report, cfg, rcfg, sasrec, relrec, quality, command)
    return RelRecRun(cfg, rcfg, report, best, adapter, labels[0], tcfg, teacher_seed)


def write_item_labels(labels: PseudoLabels, path: Path) -> Path:
    """The bundle's item labels: {"source": reviews|metadata, "items": {dense item id: label}}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extractor = labels.config.get("extractor") if labels.source == "reviews" else None
    body = {"source": labels.source, "extractor": extractor,
            "items": {str(i): labels.item[i] for i in sorted(labels.item)}}
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False))
    return path


def rerank_stage(bundle: Path, embeddings: np.ndarray, base: str | None) -> tuple[LLMRef, dict[str, Path]]:
    """The LLM rerank stage (DELRec: spec, adapter, soft prompt) of another bundle, to carry into this one.
    Its scores blend with retrieval scores, so it must come from a bundle of the same retrieval model (the
    same item-embedding file) and base LLM; anything else is refused with the reason."""
    from recbundle import BundleError, LLMRef, load_manifest

    bundle = bundle.resolve()  # `bundles/current` moves to the new bundle at its export
    m = load_manifest(bundle, verify=True)
    spec = m.llm.rerank
    if spec is None:
        raise BundleError(f"{bundle} has no LLM rerank stage (manifest.llm.rerank)")
    theirs = np.load(bundle / m.index.embeddings_path)
    if not np.array_equal(theirs, embeddings):
        raise BundleError(f"{bundle} was exported from another retrieval model (its item embeddings differ); "
                          "its rerank blend would mix scores of two models")
    if m.llm.base != base:
        raise BundleError(f"{bundle}'s reranker runs on base model {m.llm.base!r}, this bundle's on {base!r}")
    files = [p for p in ([m.llm.lora_adapters.get(spec.adapter)] if spec.adapter else []) + [m.llm.soft_prompt] if p]
    adapters = {spec.adapter: m.llm.lora_adapters[spec.adapter]} if spec.adapter else {}
    return LLMRef(base=base, lora_adapters=adapters, soft_prompt=m.llm.soft_prompt, rerank=spec), \
        {p: bundle / p for p in files}


def export(run: RelRecRun, ds: SequenceDataset, split: Split, out: Path, rerank_from: Path | None = None) -> Path:
    """The service bundle: the teacher's encoder and index, the best seed's ReLRec adapter as "explain", and
    the item pseudo-labels (`manifest.llm.item_labels`). `rerank_from`: a bundle whose LLM rerank stage
    (DELRec) this one carries too, so one bundle both reranks and explains (`make demo`)."""
    from recbundle import LLMRef
    from training.export import bundle_embeddings, export_bundle
    from training.llm.core.model import model_dir

    tcfg = run.teacher_cfg
    teacher = pipeline.load_trained(tcfg, tcfg.model_spec(tcfg.teacher.model), run.teacher_seed, split.n_items)
    labels_file = write_item_labels(run.labels, pipeline.output_dir(run.cfg) / "relrec" / "item_labels.json")
    base = None if not run.rcfg.base_model else model_dir(run.rcfg.encoder())
    llm = LLMRef(base=base, lora_adapters={"explain": "llm/explain"}, item_labels=ITEM_LABELS)
    extra = {"llm/explain": run.adapter, ITEM_LABELS: labels_file}
    if rerank_from is not None:
        carried, files = rerank_stage(Path(rerank_from), bundle_embeddings(teacher), base)
        llm = llm.model_copy(update={"lora_adapters": {**llm.lora_adapters, **carried.lora_adapters},
                                     "soft_prompt": carried.soft_prompt, "rerank": carried.rerank})
        extra |= files
    seed_row = run.report["per_seed"][str(run.best_seed)]
    metrics = {"teacher_seed": run.teacher_seed, "relrec_seed": run.best_seed, "relrec": run.report["rows"],
               "relrec_seed_cand20_test": seed_row["relrec"]["test"],
               "language": run.report["language"], "label_source": run.labels.source,
               **({"rerank_from": Path(rerank_from).name} if rerank_from is not None else {})}
    out = out if out.is_absolute() else REPO_ROOT / out
    return export_bundle(run.cfg, ds, teacher, tcfg.teacher.model, out, variant="relrec", metrics=metrics,
                         llm=llm, extra_files=extra)
