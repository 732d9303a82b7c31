"""Graph recovery on real data: the transcription factors of a hematopoiesis lineage, scored against the base GRN.

Each donor of a lineage (``eryth``, ``mono``, ``B``) is one trajectory: its cells sorted by pseudotime, cells
at one pseudotime averaged (``load_series(..., sort=True, duplicates="average")``, as ``sparsedyn graph --sort
--duplicates average`` reads them). The variables are the lineage's genes that are transcription factors in
the genome-wide base GRN (``grn/tf_targets_baseGRN_human_matrix.csv.gz``) and vary in every donor, so that
every candidate edge has a TF as its source; the reference graph is the base GRN's TF -> target entries among
them. SparseGraph with its defaults and the classical tools (as ``bench/graph_recovery.py`` runs them, one
torch thread) see the same trajectories; the table gives off-diagonal AUROC and AUPRC against the reference,
the number of edges scored above 0, CPU seconds and, for SparseGraph, its cross-validated error of the held-out
donors' derivatives (standardised units, where predicting the training mean scores 1), beside two nulls that
know nothing of the dynamics (every edge scored by its source's variance, or by its source's mean expression).

    python bench/hematopoiesis_graph.py ../shared/data --lineages eryth,mono,B

The base GRN is a motif-based prior, dense among TFs (about 60% of TF pairs): it says where a TF could bind,
not which TF drives which in this lineage, so agreement with it bounds nothing; read the AUROCs beside the
nulls.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sparsedyn.baselines.edges import BASELINES
from sparsedyn.derivatives import derivative_data
from sparsedyn.graph import SparseGraph
from sparsedyn.graph_benchmark import edge_metrics
from sparsedyn.tasks.user_data import Series, load_series


def base_grn(data_dir: Path, genes: list[str]) -> np.ndarray:
    """``truth[i, j]``: the base GRN lists TF ``genes[j]`` as a regulator of ``genes[i]`` (diagonal False)."""
    with gzip.open(data_dir / "hematopoiesis" / "grn" / "tf_targets_baseGRN_human_matrix.csv.gz", "rt") as f:
        targets = f.readline().rstrip("\n").split(",")[1:]
        column = {g: k for k, g in enumerate(targets)}
        rows = {}
        for line in f:
            tf, rest = line.rstrip("\n").split(",", 1)
            if tf in genes:
                rows[tf] = rest.split(",")
    truth = np.array([[target in column and float(rows[tf][column[target]]) > 0 for tf in genes]
                      for target in genes])
    np.fill_diagonal(truth, False)
    return truth


def lineage_series(data_dir: Path, lineage: str) -> tuple[Series, np.ndarray]:
    """The lineage's donors as trajectories of their TF genes, and the base GRN among those genes."""
    files = sorted((data_dir / "hematopoiesis" / "trajectories").glob(f"{lineage}_*_norm.csv.gz"))
    if not files:
        raise SystemExit(f"no {lineage}_*_norm.csv.gz under {data_dir / 'hematopoiesis' / 'trajectories'}")
    donors = [load_series(p, time="dpt_pseudotime", sort=True, duplicates="average") for p in files]
    genes = donors[0].features
    with gzip.open(data_dir / "hematopoiesis" / "grn" / "tf_targets_baseGRN_human_matrix.csv.gz", "rt") as f:
        f.readline()
        tfs = {line.split(",", 1)[0] for line in f}
    keep = [g for g in genes if g in tfs and all(np.std(s.values[0][:, genes.index(g)]) > 0 for s in donors)]
    cols = [genes.index(g) for g in keep]
    series = Series([s.times[0] for s in donors], [s.values[0][:, cols] for s in donors], keep,
                    [p.name.split("_")[1] for p in files])
    return series, base_grn(data_dir, keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path, help="the folder holding hematopoiesis/ (../shared/data here)")
    ap.add_argument("--lineages", default="eryth,mono,B")
    ap.add_argument("--methods", default="sparsegraph,lasso_linear,trees")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.machine()}, torch {torch.__version__}, one torch thread; python bench/hematopoiesis_graph.py "
          f"{args.data_dir} --lineages {args.lineages} --methods {args.methods}")
    print(f"{'lineage':<8} {'method':<16} {'AUROC':>6} {'AUPRC':>6} {'edges>0':>8} {'CPU s':>7}  note")
    for lineage in args.lineages.split(","):
        series, truth = lineage_series(args.data_dir, lineage)
        off = ~np.eye(len(truth), dtype=bool)
        print(f"# {lineage}: donors {series.names} ({[len(t) for t in series.times]} pseudotime points), "
              f"{series.n_features} TFs, reference density {truth[off].mean():.3f}")
        pooled = np.concatenate(series.values)
        nulls = {"null: variance": pooled.var(axis=0), "null: mean": pooled.mean(axis=0)}
        for name, by_source in nulls.items():
            m = edge_metrics(np.tile(by_source, (len(truth), 1)), truth)
            print(f"{lineage:<8} {name:<16} {m['auroc']:6.3f} {m['auprc']:6.3f} {'':>8} {'':>7}")
        for method in args.methods.split(","):
            start, note = time.process_time(), ""
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if method == "sparsegraph":
                    fit = SparseGraph(seed=0).fit(series.values, t=series.times, feature_names=series.features)
                    scores = fit.graph_
                    note = f"held-out-donor derivative error {fit.cv_mse_:.3f} (training mean: 1)"
                else:
                    scores = BASELINES[method](derivative_data(series), seed=0).scores
            seconds = time.process_time() - start
            m = edge_metrics(scores, truth)
            if any("no edge between variables at all" in str(w.message) for w in caught):
                note += "; warns: no edge between variables at all"
            print(f"{lineage:<8} {method:<16} {m['auroc']:6.3f} {m['auprc']:6.3f} {int((scores[off] > 0).sum()):8d} "
                  f"{seconds:7.1f}  {note}", flush=True)


if __name__ == "__main__":
    main()
