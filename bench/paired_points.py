"""Every point of a sweep minus its baseline run of the same seed, per block: mean difference, 95% bootstrap
interval and sign-flip p (``sparsedyn.stats``), with each point's weight sparsity.

``sparsedyn report`` compares each method's *selected* point with the baseline; a page that reads the whole path
of each method against the dense model (e.g. ``docs/results-mocap-five-seeds.md``) uses this.

    python bench/paired_points.py runs/mocap-five-seeds --baseline node_vanilla --block task \
        --metric test_mse --metric-for walkjog=test_jog_mse
    python bench/paired_points.py runs/mocap-five-seeds --baseline node_group_lasso --baseline-point methods.0.lam=0.01
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sparsedyn.stats import bootstrap_ci, sign_flip_p


def runs_of(point: Path) -> dict[int, dict]:
    """seed -> results.json of every finished seed of one point directory."""
    out = {}
    for f in sorted(point.glob("seed*/results.json")):
        out[int(f.parent.name[len("seed"):])] = json.loads(f.read_text())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--baseline", required=True, help="the baseline variant's directory name")
    ap.add_argument("--baseline-point", default="", help="a point of the baseline variant (e.g. methods.0.lam=0.01) "
                    "when it has a grid")
    ap.add_argument("--block", default="task", help="the grid axis whose values are the blocks (directory prefix)")
    ap.add_argument("--metric", default="test_mse")
    ap.add_argument("--metric-for", action="append", default=[], help="BLOCK=METRIC: another metric for one block")
    args = ap.parse_args()
    per_block = dict(item.split("=", 1) for item in args.metric_for)
    for block_dir in sorted((args.runs / args.baseline).glob(f"{args.block}=*")):
        block = block_dir.name.split("=", 1)[1]
        key = per_block.get(block, args.metric)
        base_dir = block_dir / args.baseline_point if args.baseline_point else block_dir
        base = {s: r["metrics"][key] for s, r in runs_of(base_dir).items()}
        values = np.array(list(base.values()))
        print(f"\n{block} ({key}): {args.baseline} {values.mean():.4g} ± {values.std(ddof=1):.2g} (n = {len(values)})")
        for variant in sorted(p for p in args.runs.iterdir() if p.is_dir()):
            for point in sorted((variant / block_dir.name).glob("*")):
                if point == base_dir or (variant.name == args.baseline and not args.baseline_point):
                    continue
                runs = runs_of(point)
                seeds = sorted(set(runs) & set(base))
                if not seeds:
                    continue
                d = np.array([runs[s]["metrics"][key] - base[s] for s in seeds])
                sparsity = np.mean([runs[s]["metrics"].get("weight_sparsity", np.nan) for s in seeds])
                low, high = bootstrap_ci(d)
                print(f"  {variant.name:20s} {point.name:30s} weight sp. {sparsity:.2f}  minus {args.baseline}: "
                      f"{d.mean():+.3g} [{low:+.3g}, {high:+.3g}], p = {sign_flip_p(d):.3f} (n = {len(d)})")


if __name__ == "__main__":
    main()
