"""Graph recovery against the classical tools: who wins where, on the same data.

Every method sees the same training trajectories (families x instances x regimes x seeds, see
:mod:`sparsedyn.graph_benchmark`) and is scored by off-diagonal AUROC/AUPRC against the true Jacobian's
support, forecast R^2 on held-out trajectories (where it has a vector field) and CPU seconds of its fit
(derivative smoothing excluded: it is shared). Rows go to a CSV; the summary table (mean +- sd over
instances and seeds) and the calibration of ``SparseGraph.edge_probability_`` are printed as markdown.

    python bench/graph_recovery.py --quick                 # one 15-variable 20 x 30 system: CPU seconds side by side
    python bench/graph_recovery.py --out bench-graph.csv [--families hill,glv] [--regimes standard,noisy]
        [--instances 2] [--first-instance 0] [--seeds 0,1,2] [--methods sparsegraph,lasso_poly,...]
        [--peers earlier.csv]      # a peer's name + "_diff" (lasso_linear_diff): that peer on difference quotients
    python bench/graph_recovery.py --tables a.csv,b.csv --figure wins.png   # tables and figure from CSV rows
        (a later file's row replaces an earlier one of the same data set and method)
        [--before old.csv]         # SparseGraph's AUROC change against an earlier run, paired by data set
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sparsedyn.baselines.edges import BASELINES
from sparsedyn.derivatives import derivative_data, difference_data
from sparsedyn.graph import GraphWarning, SparseGraph
from sparsedyn.graph_benchmark import FAMILIES, REGIMES, edge_metrics, forecast_r2, make_dataset
from sparsedyn.stats import bootstrap_ci

OURS = {"sparsegraph": {}, "sparsegraph_hybrid": {"hidden": 8}, "sparsegraph_linear": {"poly": False},
        "sparsegraph_norefine": {"refine": False}}


def run_one(method: str, data, seed: int) -> dict:
    if method in OURS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GraphWarning)
            series = data.train
            X = series.values
            est = SparseGraph(seed=seed, **OURS[method]).fit(X, t=series.times)
            row = {**edge_metrics(est.graph_, data.truth), "seconds": est.fit_seconds_}
            row["r2"] = forecast_r2(est.simulate, data.test)  # a blow-up scores -1 here, its warning is noise
        off = ~np.eye(len(data.truth), dtype=bool)
        confident = est.edge_probability_[off] >= 0.9
        row["edges_p90"], row["true_p90"] = int(confident.sum()), int((confident & data.truth[off]).sum())
        row["true_edges"], row["possible_edges"] = int(data.truth[off].sum()), int(off.sum())
        return row
    # "<peer>_diff": the peer on difference quotients at interval midpoints (SparseGraph's other design),
    # to tell what the design gives any tool from what SparseGraph adds
    peer, diff = (method[: -len("_diff")], True) if method.endswith("_diff") else (method, False)
    deriv = difference_data(data.train) if diff else derivative_data(data.train)
    start = time.process_time()
    est = BASELINES[peer](deriv, seed=seed)
    row = {**edge_metrics(est.scores, data.truth), "seconds": time.process_time() - start}
    if est.derivative is not None:
        from sparsedyn.baselines.edges import simulate

        bound = float(np.abs(np.concatenate(data.train.values)).max()) * 100
        row["r2"] = forecast_r2(lambda x0, t: simulate(est.derivative, x0, t, bound), data.test)
    return row


def reused_rows(files: str, rows: list[dict]) -> list[dict]:
    """Rows of other methods from earlier CSVs, on exactly the data sets of ``rows``."""
    keys = {(r["family"], int(r["instance"]), r["regime"], int(r["seed"])) for r in rows}
    ran = {r["method"] for r in rows}
    return [r for r in read_rows(files) if r["method"] not in ran
            and (r["family"], int(r["instance"]), r["regime"], int(r["seed"])) in keys]


def summary(rows: list[dict]) -> str:
    keys = sorted({(r["family"], r["regime"]) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| family | regime | " + " | ".join(methods) + " | best |", "|---|---|" + "---|" * (len(methods) + 1)]
    for fam, reg in keys:
        cells, means = [], {}
        for m in methods:
            v = [r["auroc"] for r in rows if (r["family"], r["regime"], r["method"]) == (fam, reg, m)]
            means[m] = float(np.mean(v)) if v else np.nan
            cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "")
        best = max(means, key=lambda k: -1 if np.isnan(means[k]) else means[k])
        lines.append(f"| {fam} | {reg} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines)


def mean_table(rows: list[dict], key: str) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    lines = [f"| regime ({key}, mean over families) | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    for reg in regimes:
        cells = []
        for m in methods:
            v = [r[key] for r in rows if r["regime"] == reg and r["method"] == m and r.get(key) is not None]
            v = [x for x in v if np.isfinite(x)] if key != "r2" else [max(x, -1.0) for x in v]
            cells.append(f"{np.mean(v):.3f}" if v else "")
        lines.append(f"| {reg} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gaps(rows: list[dict]) -> str:
    """SparseGraph's mean AUROC minus the best peer's, per regime (mean over families): against each cell's
    best peer (chosen after the fact, per family) and against the regime's best single peer (the one tool
    with the highest mean over the families); the issue's targets read off the last rows."""
    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    families = list(dict.fromkeys(r["family"] for r in rows))

    def mean(fam: str, reg: str, method: str) -> float:
        v = [r["auroc"] for r in rows if (r["family"], r["regime"], r["method"]) == (fam, reg, method)]
        return float(np.mean(v)) if v else np.nan

    peers = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "sparsegraph"]
    if not peers:
        return "(no peer in these rows: run them, or join an earlier run's with --peers)"
    lines = ["| regime | families | vs each cell's best peer | vs the best single peer (which) |", "|---|---|---|---|"]
    per_cell, single = {}, {}
    for reg in regimes:
        fams = [f for f in families if np.isfinite(mean(f, reg, "sparsegraph"))
                and all(np.isfinite(mean(f, reg, m)) for m in peers)]
        if not fams:
            continue
        ours = np.array([mean(f, reg, "sparsegraph") for f in fams])
        table = np.array([[mean(f, reg, m) for m in peers] for f in fams])  # (families, peers)
        best_single = int(np.argmax(table.mean(axis=0)))
        per_cell[reg] = float((ours - table.max(axis=1)).mean())
        single[reg] = float((ours - table[:, best_single]).mean())
        lines.append(f"| {reg} | {len(fams)} | {per_cell[reg]:+.3f} | {single[reg]:+.3f} ({peers[best_single]}) |")
    hard = [r for r in per_cell if r != "standard"]
    if hard:
        low, high = hard_gap_interval([r for r in rows if r["regime"] in hard], peers)
        lines.append(f"| hard regimes (mean) | | {np.mean([per_cell[r] for r in hard]):+.3f} "
                     f"[{low:+.3f}, {high:+.3f}] | {np.mean([single[r] for r in hard]):+.3f} |")
    return "\n".join(lines)


def hard_gap_interval(rows: list[dict], peers: list[str], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the mean over cells of (SparseGraph - the cell's best peer): the data sets
    (instance, seed) of each cell are resampled, the same draw for every method (they share the data), and
    the best peer is re-picked in each draw."""
    rng = np.random.default_rng(seed)
    methods = ["sparsegraph", *peers]
    cells: dict[tuple, dict[tuple, dict[str, float]]] = {}
    for r in rows:
        data_sets = cells.setdefault((r["family"], r["regime"]), {})
        data_sets.setdefault((r["instance"], r["seed"]), {})[r["method"]] = r["auroc"]
    draws_per_cell = []
    for sets in cells.values():
        full = np.array([[s[m] for m in methods] for s in sets.values() if all(m in s for m in methods)])
        if len(full) == 0:
            continue
        means = full[rng.integers(0, len(full), (draws, len(full)))].mean(axis=1)  # (draws, methods)
        draws_per_cell.append(means[:, 0] - means[:, 1:].max(axis=1))
    total = np.mean(draws_per_cell, axis=0)
    return float(np.quantile(total, 0.025)), float(np.quantile(total, 0.975))


def paired_change(before: list[dict], rows: list[dict], draws: int = 2000, seed: int = 0) -> str:
    """SparseGraph's AUROC and forecast R^2 (clipped at -1, as in the tables) in ``rows`` minus the same in
    ``before`` on the same data sets (a change of its defaults re-run on the same data), hard regimes and
    standard apart: mean, 95% bootstrap interval over the data sets, wins and losses."""
    def ours(rs: list[dict], key: str) -> dict[tuple, float]:
        return {(r["family"], r["instance"], r["regime"], r["seed"]): max(r[key], -1.0) for r in rs
                if r["method"] == "sparsegraph" and r[key] is not None and not np.isnan(r[key])}

    lines = ["| SparseGraph now minus before, paired | data sets | mean | 95% interval | wins | losses |",
             "|---|---|---|---|---|---|"]
    for key, label in (("auroc", "AUROC"), ("r2", "forecast R^2")):
        old, new = ours(before, key), ours(rows, key)
        for part, keep in (("hard regimes", lambda reg: reg != "standard"),
                           ("standard", lambda reg: reg == "standard")):
            d = np.array([new[k] - old[k] for k in new if k in old and keep(k[2])])
            if len(d):
                lo, hi = bootstrap_ci(d, n_boot=draws, seed=seed)
                lines.append(f"| {label}, {part} | {len(d)} | {d.mean():+.4f} | [{lo:+.4f}, {hi:+.4f}] | "
                             f"{(d > 1e-9).sum()} | {(d < -1e-9).sum()} |")
    return "\n".join(lines)


def calibration(rows: list[dict]) -> str:
    """Of the edges that ``SparseGraph`` gives probability >= 0.9, the share that are true, per regime and
    overall (the target: >= 90%), with the recall at that cut."""
    lines = ["| regime | edges at p >= 0.9 | true among them | recall at p >= 0.9 |", "|---|---|---|---|"]
    ours = [r for r in rows if r["method"] == "sparsegraph" and r.get("edges_p90") not in (None, "")]
    for reg in [*dict.fromkeys(r["regime"] for r in ours), "all"]:
        sel = [r for r in ours if reg in ("all", r["regime"])]
        n, true = sum(int(r["edges_p90"]) for r in sel), sum(int(r["true_p90"]) for r in sel)
        recall = true / max(1, sum(int(r["true_edges"]) for r in sel))
        lines.append(f"| {reg} | {n} | {true / n:.1%} | {recall:.1%} |" if n else f"| {reg} | 0 | | |")
    return "\n".join(lines)


def plot_wins(rows: list[dict], path: Path, footer: str) -> None:
    """Heat map: SparseGraph's mean AUROC minus the best peer's, per family (rows) and regime (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = list(dict.fromkeys(r["family"] for r in rows))
    regs = list(dict.fromkeys(r["regime"] for r in rows))
    gap = np.full((len(fams), len(regs)), np.nan)
    for a, fam in enumerate(fams):
        for b, reg in enumerate(regs):
            means: dict[str, list[float]] = {}
            for r in rows:
                if r["family"] == fam and r["regime"] == reg:
                    means.setdefault(r["method"], []).append(float(r["auroc"]))
            ours = means.pop("sparsegraph", None)
            if ours and means:
                gap[a, b] = np.mean(ours) - max(np.mean(v) for v in means.values())
    fig, ax = plt.subplots(figsize=(1.2 * len(regs) + 2.5, 0.5 * len(fams) + 1.8))
    im = ax.imshow(gap, cmap="RdBu", vmin=-0.15, vmax=0.15, aspect="auto")
    for (a, b), v in np.ndenumerate(gap):
        ax.text(b, a, f"{v:+.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(regs)), regs, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(fams)), fams, fontsize=8)
    ax.set_title("off-diagonal AUROC: SparseGraph minus the best peer (blue: SparseGraph ahead)", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.text(0.01, 0.01, footer, fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_tables(rows: list[dict]) -> None:
    print(summary(rows))
    for key in ("auroc", "auprc", "r2", "seconds"):
        print()
        print(mean_table(rows, key))
    print("\nSparseGraph's AUROC minus the best peer's (target: >= 0 in the standard regime, >= +0.05 on average "
          "over the hard ones):\n")
    print(gaps(rows))
    print("\ncalibration of SparseGraph.edge_probability_:\n")
    print(calibration(rows))


def read_rows(files: str) -> list[dict]:
    """Rows of the CSV files, in order; a row of a later file replaces an earlier one of the same family,
    instance, regime, seed and method (a re-run of one method on the same data sets)."""
    rows: dict[tuple, dict] = {}
    for name in filter(None, files.split(",")):
        with open(name) as f:
            for r in csv.DictReader(f):
                key = (r["family"], r["instance"], r["regime"], r["seed"], r["method"])
                rows[key] = {**r, **{k: float(r[k]) if r[k] not in ("", None) else None
                                     for k in ("auroc", "auprc", "r2", "seconds")}}
    return list(rows.values())


def quick() -> None:
    """A default fit's CPU seconds against LassoCV's on one 15-variable, 20 x 30 system (one thread)."""
    torch.set_num_threads(1)
    data = make_dataset("coupled_rossler", 0, REGIMES["standard"], 0)
    rows = {m: run_one(m, data, 0) for m in ("lasso_linear", "lasso_poly", "sparsegraph")}
    print(f"# quick: coupled_rossler (15 variables), {len(data.train)} training trajectories x 30 points, "
          f"{platform.machine()}, torch {torch.__version__}, 1 thread")
    for m, r in rows.items():
        r2 = r.get("r2", float("nan"))
        print(f"{m:14s} CPU {r['seconds']:6.2f} s   AUROC {r['auroc']:.3f}   forecast R^2 {r2:.3f}")
    ratio = rows["sparsegraph"]["seconds"] / rows["lasso_linear"]["seconds"]
    print(f"SparseGraph() default fit / LassoCV linear fit, CPU time: {ratio:.2f}x (target: default fit <= 20 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--regimes", default="standard")
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--first-instance", type=int, default=0,
                    help="instances first-instance .. first-instance + instances - 1 (held-out instances)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--methods", default="sparsegraph,lasso_linear,lasso_poly,sindy,trees")
    ap.add_argument("--out", default="graph_recovery.csv")
    ap.add_argument("--peers", default="", help="CSV files of an earlier run (comma-separated) whose rows of "
                    "methods not run now join the tables (same families, instances, regimes and seeds)")
    ap.add_argument("--tables", default="", help="Only print the tables (and --figure) of these CSV files")
    ap.add_argument("--figure", default="", help="Write the who-wins-where heat map here (PNG)")
    ap.add_argument("--before", default="", help="With --tables: CSV files of an earlier SparseGraph run on the "
                    "same data sets; prints its AUROC change, paired by data set")
    ap.add_argument("--before-method", default="sparsegraph", help="With --before: the method of its rows that "
                    "sparsegraph is paired with (e.g. sparsegraph_norefine, in the same files)")
    ap.add_argument("--fresh", action="store_true", help="also offer bench/graph_fresh_systems.py's families "
                    "(hill20, glv16, tanh20, rossler8: sizes and seeds outside the benchmark)")
    args = ap.parse_args()
    if args.quick:
        quick()
        return
    if args.tables:
        rows = read_rows(args.tables)
        print_tables(rows)
        if args.before:
            print(f"\nSparseGraph against the {args.before_method} rows in --before, same data sets:\n")
            before = [{**r, "method": "sparsegraph"} for r in read_rows(args.before)
                      if r["method"] == args.before_method]
            print(paired_change(before, rows))
        if args.figure:
            plot_wins(rows, Path(args.figure), f"python bench/graph_recovery.py --tables ... · {platform.machine()}, "
                      f"2-core CPU, torch {torch.__version__}, 1 thread")
        return
    if args.fresh:
        from graph_fresh_systems import FRESH

        FAMILIES.update(FRESH)
    torch.set_num_threads(1)
    rows = []
    fields = ["family", "instance", "regime", "seed", "method", "auroc", "auprc", "r2", "seconds", "edges_p90",
              "true_p90", "true_edges", "possible_edges"]
    out = Path(args.out)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for fam in args.families.split(","):
            for reg in args.regimes.split(","):
                for inst in range(args.first_instance, args.first_instance + args.instances):
                    for seed in (int(s) for s in args.seeds.split(",")):
                        data = make_dataset(fam, inst, REGIMES[reg], seed)
                        for m in args.methods.split(","):
                            r = {"family": fam, "instance": inst, "regime": reg, "seed": seed, "method": m,
                                 **run_one(m, data, seed)}
                            rows.append(r)
                            writer.writerow(r)
                            f.flush()
                            print(f"{fam:16s} {reg:16s} i{inst} s{seed} {m:20s} AUROC {r['auroc']:.3f} "
                                  f"R2 {r.get('r2', float('nan')):8.3f} {r['seconds']:6.1f}s", flush=True)
    rows += reused_rows(args.peers, rows)
    print(f"\n# {platform.machine()}, torch {torch.__version__}, 1 thread; rows in {out}\n")
    print_tables(rows)


if __name__ == "__main__":
    main()
