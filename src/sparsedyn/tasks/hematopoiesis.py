"""Human hematopoiesis trajectories (Aliee et al. 2022 reference data): loading and preprocessing.

Three lineages (``eryth``, ``mono``, ``B``) of bone-marrow cells ordered by pseudotime, one file
per lineage and donor (``eryth_24`` does not exist). Preprocessing, as in the paper's code:
sort by pseudotime, drop duplicate times, drop the first 10 and last 20 cells, min-max
normalise every gene (a constant gene becomes 0) and the time to [0, 1].

The initial state, ``start="reference"`` (default): as the reference notebook computes it, the mean
of the first 5 cells per gene after dropping cells with a z-score >= 3 *among those 5 cells*; within
five cells |z| can never reach 3 ((n - 1) / sqrt(n) = 1.79), so this is the plain mean of the first
5 cells. ``start="lineage_z"``: the z-score taken over the whole lineage instead, which does drop
outliers among the first cells (sparsedyn's variant until 2026-11-22; the results pages of that
date used it).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LINEAGES = ("eryth", "mono", "B")
TRAIN_DONOR = "12"
TEST_DONORS = ("11", "21", "24", "36")


@dataclass
class Lineage:
    """One preprocessed lineage: times ``(n,)`` in [0, 1], expression ``(n, genes)``, initial state."""

    times: np.ndarray
    X: np.ndarray
    x0: np.ndarray
    genes: list[str]


def read_lineage(data_dir: str | Path, lineage: str, donor: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw ``(pseudotime (n,), expression (n, genes), gene names)`` of one lineage and donor."""
    if lineage not in LINEAGES:
        raise ValueError(f"unknown lineage {lineage!r}; choose from {LINEAGES}")
    path = Path(data_dir) / "trajectories" / f"{lineage}_{donor}_norm.csv.gz"
    if not path.exists():
        hint = " (the data set has no erythroid lineage for donor 24)" if (lineage, donor) == ("eryth", "24") else ""
        raise FileNotFoundError(f"hematopoiesis file not found: {path}{hint}")
    with _reading(path), gzip.open(path, "rt") as f:
        header = f.readline().rstrip("\n").split("\t")
        if not header or header[0] != "dpt_pseudotime":
            raise ValueError(f"{path}: first column must be 'dpt_pseudotime', got {header[:1]}")
        try:
            data = np.loadtxt(f, delimiter="\t", ndmin=2)
        except ValueError as e:
            raise ValueError(f"{path}: malformed table ({e})") from None
    if data.shape[1] != len(header):
        raise ValueError(f"{path}: {data.shape[1]} columns but {len(header)} header names")
    return data[:, 0], data[:, 1:], header[1:]


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = np.nanmin(a, axis=0), np.nanmax(a, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a - lo) / (hi - lo)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


STARTS = ("reference", "lineage_z")


def initial_state(X: np.ndarray, n_first: int = 5, z_max: float = 3.0, start: str = "reference") -> np.ndarray:
    """Mean of the first ``n_first`` cells per gene, skipping cells with |z| >= ``z_max`` for that gene;
    z over those cells (``start="reference"``) or over the whole lineage (``"lineage_z"``)."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    ref = X[:n_first] if start == "reference" else X
    sd = ref.std(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 0, (X[:n_first] - ref.mean(axis=0)) / sd, 0.0)
    first, ok = X[:n_first], np.abs(z) < z_max
    counts = ok.sum(axis=0)
    return np.where(counts > 0, (first * ok).sum(axis=0) / np.maximum(counts, 1), first.mean(axis=0))


def preprocess(times: np.ndarray, X: np.ndarray, genes: list[str], drop_first: int = 10, drop_last: int = 20,
               n_first: int = 5, start: str = "reference") -> Lineage:
    order = np.argsort(times, kind="stable")
    times, X = times[order], X[order]
    _, unique = np.unique(times, return_index=True)  # first cell of every distinct time
    times, X = times[unique], X[unique]
    if len(times) <= drop_first + drop_last + 1:
        raise ValueError(f"only {len(times)} distinct times: nothing left after trimming {drop_first} + {drop_last}")
    times, X = times[drop_first:len(times) - drop_last], X[drop_first:len(times) - drop_last]
    X = _minmax(X)
    t = (times - times.min()) / (times.max() - times.min())
    return Lineage(t, X, initial_state(X, n_first, start=start), list(genes))


def load_lineage(data_dir: str | Path, lineage: str, donor: str, start: str = "reference") -> Lineage:
    return preprocess(*read_lineage(data_dir, lineage, donor), start=start)


def load_donor(data_dir: str | Path, donor: str, start: str = "reference") -> dict[str, Lineage]:
    """``{lineage: Lineage}`` of one donor: all three lineages, except the erythroid one of donor 24,
    which the data set lacks (any other missing file is an error)."""
    out = {}
    for name in LINEAGES:
        try:
            out[name] = load_lineage(data_dir, name, donor, start)
        except FileNotFoundError:
            if (name, donor) != ("eryth", "24"):
                raise
    return out


def transcription_factors(data_dir: str | Path) -> set[str]:
    """TF names of the genome-wide base GRN (``grn/tf_targets_baseGRN_human_matrix.csv.gz``)."""
    path = Path(data_dir) / "grn" / "tf_targets_baseGRN_human_matrix.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"TF prior not found: {path}")
    with _reading(path), gzip.open(path, "rt") as f:
        f.readline()
        return {line.split(",", 1)[0] for line in f if line.strip()}


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A truncated or corrupt gzip file becomes one error naming it (gzip itself names no file)."""
    try:
        yield
    except (EOFError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the file ({type(e).__name__}: {e}); is it truncated?") from None
