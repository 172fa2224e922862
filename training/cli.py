"""`python -m training <stage> ...`: one subcommand per stage, and `run` for a whole preset.

    python -m training run --preset ml-100k                 # prepare, train 3 models x 3 seeds, evaluate, report
    python -m training prepare --preset amazon-magazine --data-dir ../shared/data
    python -m training train --preset ml-100k --model sasrec --seeds 0
    python -m training evaluate --preset ml-100k            # re-evaluate saved models, rewrite the report
    python -m training teacher --preset ml-100k             # export the teacher's top-k + item embeddings
    python -m training export --preset ml-100k --out bundles   # the service's bundle (best teacher seed)
    python -m training download --dataset ml-100k --dest ~/.cache/llm-seqrec/data
    python -m training p2rec --preset p2rec-quick --export-to bundles   # TSLRec/P2Rec: LLM-augmented SASRec
    python -m training delrec --preset delrec-quick --export-to bundles # DELRec: the LLM reranks
    python -m training relrec --preset relrec-tiny --export-to bundles  # ReLRec: LLM keeps its language
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("training")


def _add_preset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="ml-100k", help="name in configs/ or a YAML path (default: ml-100k)")
    p.add_argument("--data-dir", help="read the dataset from this folder instead of ../shared/data or a download")
    p.add_argument("--output-dir", help="override the preset's output_dir")
    p.add_argument("--seeds", type=int, nargs="+", help="override the preset's seeds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("prepare", "read, filter and split the dataset; print its stats"),
        ("train", "train (and test-evaluate) models over the preset's seeds"),
        ("evaluate", "aggregate saved per-seed results into metrics.json, report.md and plots"),
        ("teacher", "export the teacher's per-user top-k predictions and item embedding table"),
        ("run", "the whole preset: prepare, train, evaluate, report, teacher export"),
        ("export", "write a versioned service bundle from a trained model (default: the teacher)"),
        ("p2rec", "P2Rec: teacher, LLM stages, SR models on the augmented item table, report [, bundle]"),
        ("delrec", "DELRec: teacher, soft-prompt distillation, LoRA ranking, cand20 + rerank report [, bundle]"),
        ("relrec", "ReLRec: teacher, pseudo-labels, multi-task LoRA, cand20 + perplexity report [, bundle]"),
    ):
        p = sub.add_parser(name, help=help_)
        _add_preset(p)
        if name in ("train", "run", "evaluate"):
            p.add_argument("--model", action="append", help="only this model (repeatable)")
        if name == "run":
            p.add_argument("--export-to", help="also export the teacher's bundle into this folder")
        if name == "p2rec":
            p.add_argument("--export-to", help="also export the best variant's bundle into this folder")
            p.add_argument("--variant", help="export this p2rec model (default: best mean validation NDCG@10)")
            p.add_argument("--publish", help="also copy the report as p2rec-<preset>.md/.json into this folder")
        if name == "delrec":
            p.add_argument("--export-to", help="also export the bundle (teacher + best seed's ranker) here")
            p.add_argument("--publish", help="also copy the report as delrec-<preset>.md/.json into this folder")
        if name == "relrec":
            p.add_argument("--export-to", help="also export the bundle (teacher + best seed's explain adapter) here")
            p.add_argument("--publish", help="also copy the report as relrec-<preset>.md/.json into this folder")
            p.add_argument("--rerank-from", help="carry this bundle's LLM rerank stage (DELRec) into the exported "
                           "bundle; it must share the retrieval model and base LLM (make demo: bundles/current)")
        if name == "export":
            p.add_argument("--model", help="model to export (default: the preset's teacher)")
            p.add_argument("--seed", type=int, help="training seed to export (default: best validation NDCG@10)")
            p.add_argument("--out", default="bundles", help="folder that receives <bundle_id>/ (default: bundles)")
    dl = sub.add_parser("download", help="download and checksum-verify a public dataset")
    dl.add_argument("--dataset", required=True)
    dl.add_argument("--dest", default="~/.cache/llm-seqrec/data")
    return parser


def _config(args: argparse.Namespace) -> Any:
    from training.config import load_config

    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data.data_dir"] = args.data_dir
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    if args.seeds:
        overrides["eval.seeds"] = args.seeds
    return load_config(args.preset, overrides)


def _p2rec(args: argparse.Namespace, cfg: Any, ds: Any, split: Any, command: str) -> int:
    from training.llm.p2rec import chain as p2rec_pipeline
    from training.llm.p2rec.report import GAIN_METRIC, efficiency_line
    from training.pipeline import output_dir

    run = p2rec_pipeline.run_chain(cfg, ds, split, command)
    print(f"\n## {cfg.name}: test metrics, mean ± std over seeds {cfg.eval.seeds}\n")
    print(run.table)
    print(f"### relative {GAIN_METRIC} change against plain {cfg.teacher.model}\n")
    print(run.gains)
    print(efficiency_line(run.p2rec.report))
    out = output_dir(cfg)
    print(f"\nreport: {out / p2rec_pipeline.REPORT_NAME}; P2Rec stages: {out / 'p2rec' / 'report.json'}")
    if args.publish:
        print("published:", *map(str, p2rec_pipeline.publish(cfg, Path(args.publish))))
    if args.export_to:
        bundle = p2rec_pipeline.export_variant(cfg, ds, split, run, Path(args.export_to), args.variant)
        print(f"bundle: {bundle}")
    return 0


def _llm_method(method: str, args: argparse.Namespace, cfg: Any, ds: Any, split: Any, command: str) -> int:
    """`delrec` / `relrec`: run the method's chain, print its table, then publish and export on request."""
    import importlib

    from training.pipeline import output_dir
    from training.train import distributed

    chain = importlib.import_module(f"training.llm.{method}.chain")
    report = importlib.import_module(f"training.llm.{method}.report")
    run = chain.run_chain(cfg, ds, split, command)
    world = distributed.current()
    distributed.teardown()
    if not world.is_main:  # rank 0 reports and exports
        return 0
    labels = f"; labels: {run.report['label_source']}" if "label_source" in run.report else ""
    print(f"\n## {cfg.name}: {method}, mean ± std over seeds {cfg.eval.seeds}{labels}\n")
    print(run.report["table"])
    print(f"report: {output_dir(cfg) / report.REPORT_NAME}")
    if args.publish:
        print("published:", *map(str, report.publish(cfg, Path(args.publish))))
    if args.export_to:
        extra = {"rerank_from": Path(args.rerank_from)} if getattr(args, "rerank_from", None) else {}
        print(f"bundle: {chain.export(run, ds, split, Path(args.export_to), **extra)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command == "download":
        from training.data import DATASETS, download_dataset

        if args.dataset not in DATASETS:
            log.error("unknown dataset %r; known: %s", args.dataset, sorted(DATASETS))
            return 2
        spec = DATASETS[args.dataset]
        folder = download_dataset(spec, Path(args.dest).expanduser() / spec.folder)
        print(folder)
        return 0

    from training import pipeline
    from training.train import distributed

    cfg = _config(args)
    # under torchrun: the SR trainer and the LLM stages split their batches across the processes
    world = distributed.setup() if args.command in ("train", "run", "delrec", "relrec") else distributed.World()
    ds, split = pipeline.prepare_stage(cfg)
    if args.command == "prepare":
        print(pipeline.format_stats(ds))
        return 0
    if args.command in ("p2rec", "delrec", "relrec"):
        command = shlex.join(["python", "-m", "training", *(argv or sys.argv[1:])])
        if args.command == "p2rec":
            return _p2rec(args, cfg, ds, split, command)
        if cfg.data.cold_item_frac:  # their tuning loops do not leave held-out items out (Split.unseen_items)
            log.error("%s does not support data.cold_item_frac; the cold-start split is P2Rec's (p2rec.cold_item_frac)",
                      args.command)
            return 2
        return _llm_method(args.command, args, cfg, ds, split, command)
    if args.command == "export":
        print(pipeline.export_stage(cfg, ds, split, args.model, args.seed, Path(args.out)))
        return 0
    models = getattr(args, "model", None)
    if args.command in ("train", "run"):
        results = pipeline.train_stage(cfg, split, models)
        distributed.teardown()  # under torchrun: the SR models are trained; rank 0 goes on alone
        if not world.is_main:
            return 0
    else:
        results = pipeline.collect_results(cfg, split, models)
    if args.command == "teacher":
        print(pipeline.export_teacher(cfg, split))
        return 0
    table = pipeline.report_stage(cfg, results)
    print(f"\n## {cfg.name}: test metrics, mean ± std over seeds {cfg.eval.seeds}\n")
    print(table)
    print(f"\nreport: {pipeline.output_dir(cfg)}/report.md")
    if args.command == "run" and cfg.teacher.model in results:
        print(f"teacher export: {pipeline.export_teacher(cfg, split)}")
        if args.export_to:
            print(f"bundle: {pipeline.export_stage(cfg, ds, split, None, None, Path(args.export_to))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
