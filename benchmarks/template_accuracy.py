"""Grouping accuracy of the error-template miner on labelled Loghub samples, next to Drain's published figures.

    python -m benchmarks.template_accuracy DIR [--json PATH]

Every `*_structured.csv` in DIR is parsed from its `Content` column alone (ground truth: `EventId`), with one
miner configuration for all datasets (no per-dataset masking, as in a real deployment).

Grouping accuracy (Loghub's definition): a message is correctly grouped iff the set of messages in its
predicted group equals the set of messages sharing its true EventId; GA = correct messages / all messages.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from pathlib import Path

from orchestration.lib.templates.miner import TemplateMiner

# Drain's grouping accuracy on the Loghub 2k samples: Zhu et al., "Tools and Benchmarks for Automated Log
# Parsing", ICSE-SEIP 2019 (arXiv:1811.03509), Table III, Drain row. Cross-checked against the benchmark table in
# logpai/logparser, logparser/Drain/README.md (HDFS 0.9975, Hadoop 0.9475, Spark 0.92, Zookeeper 0.9665,
# BGL 0.9625, HPC 0.887, Thunderbird 0.955, Windows 0.997) and the fixture's README. Drain used a per-dataset
# regex list, similarity threshold and depth there; we use one configuration for all.
DRAIN_PUBLISHED_GA: dict[str, float] = {
    "BGL": 0.963,
    "HDFS": 0.998,
    "HPC": 0.887,
    "Hadoop": 0.948,
    "Spark": 0.920,
    "Thunderbird": 0.955,
    "Windows": 0.997,
    "Zookeeper": 0.967,
}


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Loghub GA: share of messages whose predicted group is exactly their true group (as a set of messages)."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted must have the same length")
    if not truth:
        return 0.0
    true_groups: dict[Hashable, set[int]] = defaultdict(set)
    pred_groups: dict[Hashable, set[int]] = defaultdict(set)
    for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
        true_groups[t].add(i)
        pred_groups[p].add(i)
    correct = sum(
        len(members) for members in pred_groups.values() if members == true_groups[truth[next(iter(members))]]
    )
    return correct / len(truth)


def read_dataset(path: Path) -> tuple[list[str], list[str]]:
    """(Content, EventId) columns of one structured Loghub csv."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def parse(contents: Sequence[str]) -> list[str]:
    """Predicted template per message: mine everything, then read each message's final (resolved) template."""
    miner = TemplateMiner()  # the production defaults: one configuration for every dataset
    first_ids = [miner.add(text).template_id for text in contents]
    return [miner.resolve(tid) for tid in first_ids]


def dataset_name(path: Path) -> str:
    return path.name.split("_")[0]


def evaluate_dir(directory: Path) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    for path in sorted(directory.glob("*_structured.csv")):
        contents, truth = read_dataset(path)
        started = time.perf_counter()
        predicted = parse(contents)
        elapsed = time.perf_counter() - started
        name = dataset_name(path)
        results.append(
            {
                "dataset": name,
                "messages": len(contents),
                "true_templates": len(set(truth)),
                "predicted_templates": len(set(predicted)),
                "ga": round(grouping_accuracy(truth, predicted), 4),
                "drain_published_ga": DRAIN_PUBLISHED_GA.get(name),
                "seconds": round(elapsed, 3),
            }
        )
    return results


def summarize(results: list[dict[str, object]]) -> dict[str, object]:
    ours = [float(r["ga"]) for r in results]  # type: ignore[arg-type]
    paired = [(float(r["ga"]), float(r["drain_published_ga"])) for r in results if r["drain_published_ga"] is not None]  # type: ignore[arg-type]
    mean_ours = sum(ours) / len(ours) if ours else 0.0
    mean_ours_paired = sum(o for o, _ in paired) / len(paired) if paired else None
    mean_drain = sum(d for _, d in paired) / len(paired) if paired else None
    return {
        "mean_ga": round(mean_ours, 4),
        "mean_ga_on_drain_datasets": round(mean_ours_paired, 4) if mean_ours_paired is not None else None,
        "drain_published_mean_ga": round(mean_drain, 4) if mean_drain is not None else None,
        "ratio_vs_drain": round(mean_ours_paired / mean_drain, 4) if mean_drain else None,
    }


def _fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def render(results: list[dict[str, object]], summary: dict[str, object]) -> str:
    """Side-by-side table: our GA next to Drain's published GA, per dataset and on average."""
    header = (
        f"{'dataset':<12} {'messages':>8} {'templates':>9} {'found':>6} {'GA ours':>8} {'GA Drain':>9} {'ratio':>6}"
    )
    lines = [header]
    for r in results:
        drain = r["drain_published_ga"]
        ratio = float(r["ga"]) / float(drain) if drain else None  # type: ignore[arg-type]
        lines.append(
            f"{r['dataset']:<12} {r['messages']:>8} {r['true_templates']:>9} {r['predicted_templates']:>6} "
            f"{_fmt(r['ga']):>8} {_fmt(drain):>9} {_fmt(ratio):>6}"
        )
    mean = f"{_fmt(summary['mean_ga_on_drain_datasets']):>8} {_fmt(summary['drain_published_mean_ga']):>9}"
    lines.append(f"{'mean':<12} {'':>8} {'':>9} {'':>6} {mean} {_fmt(summary['ratio_vs_drain']):>6}")
    if summary["mean_ga"] != summary["mean_ga_on_drain_datasets"]:
        lines.append(f"mean GA over all {len(results)} datasets: {_fmt(summary['mean_ga'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.template_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="folder holding *_structured.csv files (Loghub 2k samples)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    results = evaluate_dir(args.directory)
    if not results:
        print(f"no *_structured.csv in {args.directory}", file=sys.stderr)
        return 1
    summary = summarize(results)
    print(render(results, summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"benchmark": "template_accuracy", "directory": str(args.directory), "datasets": results, **summary}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
