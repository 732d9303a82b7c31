"""Paired test-perplexity differences of the 98% Elman language rows (``configs/sweeps/language_elman_98.yaml``).

Each comparison pairs runs by seed (same seed: same data order and initialisation), with a 95% bootstrap
interval and a sign-flip p (``sparsedyn.stats``); printed as the Markdown rows of
``docs/results-language-elman.md``.

    python bench/language_elman_pairs.py runs/language-elman-98
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sparsedyn.stats import bootstrap_ci, sign_flip_p

sys.path.insert(0, str(Path(__file__).resolve().parent))  # paired_points, beside this file
from paired_points import runs_of  # noqa: E402

POINTS = {"no penalty 90%": "no_penalty/methods.2.sparsity=0.9", "no penalty 98%": "no_penalty/methods.2.sparsity=0.98",
          "L1 98%": "l1", "torus DoG 98%": "torus_dog", "permuted DoG 98%": "permuted_dog",
          "torus DoG lambda 0.01, 90%": "torus_dog_weak"}
PAIRS = [("no penalty 98%", "no penalty 90%"), ("L1 98%", "no penalty 98%"), ("torus DoG 98%", "no penalty 98%"),
         ("torus DoG 98%", "L1 98%"), ("permuted DoG 98%", "torus DoG 98%"),
         ("torus DoG lambda 0.01, 90%", "no penalty 90%")]


def perplexities(point: Path) -> dict[int, float]:
    """seed -> test perplexity of every finished run of one point."""
    return {seed: r["metrics"]["test_ppl"] for seed, r in runs_of(point).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    args = ap.parse_args()
    values = {name: perplexities(args.runs / sub) for name, sub in POINTS.items()}
    missing = [name for name, v in values.items() if not v]
    if missing:
        raise SystemExit(f"no finished runs for {missing} under {args.runs}")
    print("| comparison | test ppl difference [95% CI], sign-flip p |\n|---|---|")
    for a, b in PAIRS:
        seeds = sorted(set(values[a]) & set(values[b]))
        d = np.array([values[a][s] - values[b][s] for s in seeds])
        low, high = bootstrap_ci(d)
        print(f"| {a} − {b} | {d.mean():+.1f} [{low:+.1f}, {high:+.1f}], p = {sign_flip_p(d):.2f} (n = {len(d)}) |")


if __name__ == "__main__":
    main()
