"""The fault campaign (issue 13, item 8): run the chosen faults (scripts/faults/, one module each) and write
docs/results/fault-campaign.md and .json with the exact command, the machine and each fault's pass/fail
against its stated criteria.

    python scripts/fault_campaign.py                                    # every fault, the 10-minute soak included
    python scripts/fault_campaign.py --faults redis_restart llm_stall tampered_bundle slow_clients \\
        --soak-args "--duration 60"                                     # + a 60 s soak dry run
    python scripts/fault_campaign.py --faults soak                      # the soak alone; other results are kept

Options of one fault go in `--<fault>-args "..."` (see `python -m scripts.faults.<fault> --help`). Results of
faults not run this time are kept from the previous report, each with its own command and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.faults.common import FaultResult, setup_logging  # noqa: E402

FAULTS = ["redis_restart", "llm_stall", "tampered_bundle", "slow_clients", "soak"]
OUT = REPO / "docs" / "results" / "fault-campaign"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "description": "2 CPU cores shared with three other engineers' jobs, no GPU",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(),
            "python": platform.python_version()}  # fmt: skip


def run_fault(name: str, extra: str, command: str) -> dict[str, Any]:
    module = importlib.import_module(f"scripts.faults.{name}")
    parser = argparse.ArgumentParser(prog=f"scripts.faults.{name}")
    module.add_args(parser)
    args = parser.parse_args(shlex.split(extra))
    started = dt.datetime.now(dt.UTC)
    try:
        result: FaultResult = module.run(args, command)
        entry = result.as_dict()
    except Exception as e:  # a fault that crashes fails; the others still run
        entry = FaultResult(name, command, notes=[f"crashed: {type(e).__name__}: {e}"]).as_dict()
    entry["options"] = extra
    entry["started"] = started.isoformat(timespec="seconds")
    entry["seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    entry["machine"] = machine()
    return entry


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Fault campaign", "",
             "Written by `scripts/fault_campaign.py` (faults in `scripts/faults/`, described in docs/service.md, "
             "\"Fault campaign\"). Each fault below names the command and the machine of its own run.", "",
             "| fault | result | run | seconds |", "|---|---|---|---|"]  # fmt: skip
    for name in FAULTS:
        if (e := report["faults"].get(name)) is None:
            continue
        verdict = "skipped" if e["skipped"] else ("PASS" if e["passed"] else "FAIL")
        dry = " (dry run)" if any("DRY RUN" in n for n in e["notes"]) else ""
        lines.append(f"| {name} | {verdict}{dry} | {e['started']} | {e['seconds']} |")
    for name in FAULTS:
        if (e := report["faults"].get(name)) is None:
            continue
        m = e["machine"]
        lines += ["", f"## {name}", "", f"Command: `{e['command']}`", "",
                  f"Machine: {m['description']} ({m['cpus']} CPUs seen, load average {m['load_average_at_start']} "
                  f"at the start), {m['platform']}, Python {m['python']}.", "",
                  "| criterion | result | measured |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {c['name']} | {'PASS' if c['passed'] else 'FAIL'} | {c['detail'].replace('|', '/')} |"
                  for c in e["criteria"]]  # fmt: skip
        lines += ["", *[f"- {n}" for n in e["notes"]]] if e["notes"] else []
        figures = {k: v for k, v in e["figures"].items() if k != "samples"}
        lines += ["", "<details><summary>figures</summary>", "", "```json", json.dumps(figures, indent=1), "```",
                  "", "</details>"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=FAULTS)
    for name in FAULTS:
        parser.add_argument(f"--{name.replace('_', '-')}-args", default="", help=f"options of scripts.faults.{name}")
    parser.add_argument("--out", type=Path, default=OUT, help="report path without suffix (.md and .json)")
    args = parser.parse_args()
    setup_logging()
    command = "python scripts/fault_campaign.py " + shlex.join(sys.argv[1:])
    json_path = args.out.with_suffix(".json")
    report = json.loads(json_path.read_text()) if json_path.exists() else {"faults": {}}
    for name in args.faults:
        report["faults"][name] = run_fault(name, getattr(args, f"{name}_args"), command)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")  # after each fault: a crash keeps the rest
        args.out.with_suffix(".md").write_text(markdown(report))
    failed = [n for n in args.faults if not report["faults"][n]["passed"] and not report["faults"][n]["skipped"]]
    print(f"{len(args.faults) - len(failed)}/{len(args.faults)} faults passed; report: {args.out.with_suffix('.md')}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
