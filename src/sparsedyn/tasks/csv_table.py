"""CSV and TSV tables of observations read into trajectories: the file format's own concerns (encoding and
byte-order mark, the separator, decimal commas, ragged rows, unnamed columns, ISO 8601 date-times, the group
column); the checks every reader shares follow in :func:`~sparsedyn.tasks.user_data.check_series`.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .series import DataError, Series, among


def _open_text(path: Path):
    """The file as text; ``utf-8-sig`` drops the byte-order mark that spreadsheet programs write first (it would
    otherwise stick to the first column's name)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


DELIMITERS = ",;\t"  # read_csv takes the one of these that its header line holds most often (ties: ",")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")


def _delimiter(header_line: str) -> str:
    """The separator of a CSV by its header line: comma, semicolon (spreadsheets in locales whose decimal mark
    is a comma) or tab, whichever the line holds most often; a comma on a tie (a one-column file)."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (counts[d], d == ","))


def _number(cell: str, decimal_comma: bool) -> float:
    """A cell as a float; empty is NaN; with ``decimal_comma`` (a ;-separated file) ``1,5`` reads as 1.5."""
    if not cell:
        return np.nan
    if decimal_comma and _DECIMAL_COMMA.fullmatch(cell):
        cell = cell.replace(",", ".")
    return float(cell)


def parse_csv(path: Path, time: str, group: str | None, features: Sequence[str] | None, sort: bool) -> Series:
    """The file's trajectories before the shared checks (:func:`~sparsedyn.tasks.user_data.read_csv` runs them):
    one row per observation, empty cells missing values, the separator a comma, a semicolon or a tab read off
    the header line (:func:`_delimiter`), a decimal comma (``1,5``) read as a decimal point in a
    semicolon-separated file. Unless ``sort``, a file without a group column whose time goes back is refused
    here (most likely several trajectories one after another)."""
    try:
        with _open_text(path) as f:
            text = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    delimiter = _delimiter(text.split("\n", 1)[0])
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    while header and not header[-1] and not any(len(r) == len(header) and r[-1].strip() for r in body):
        header.pop()  # a separator that ends every line: no column
    for name, role in [(time, "time"), (group, "group"), *[(c, "feature") for c in (features or [])]]:
        if name is not None and name not in header:
            raise DataError(f"{path}: {role} column {name!r} not found {among(name, header, 'columns')}")
    _check_row_lengths(header, body, path)
    feats = list(features) if features is not None else [h for h in header if h not in (time, group)]
    if "" in feats:
        raise DataError(f"{path}: column {header.index('') + 1} has no name in the header line; name it, or "
                        "choose the feature columns (features=...)")
    col = {h: i for i, h in enumerate(header)}

    def cells(name: str) -> list[str]:
        return [row[col[name]].strip() for row in body]  # every row holds the header's fields (checked above)

    def column(name: str) -> np.ndarray:
        out = np.empty(len(body))
        for k, cell in enumerate(cells(name)):
            try:
                out[k] = _number(cell, delimiter == ";")
            except ValueError:
                raise DataError(f"{path}: column {name!r} is not numeric (row {k + 2}: {cell!r})") from None
        return out

    try:
        t = column(time)
    except DataError as not_numeric:
        t = _date_times(cells(time), not_numeric)
    if np.isnan(t).any():
        raise DataError(f"{path}: column {time!r} has an empty time at row {int(np.argmax(np.isnan(t))) + 2}")
    if group is None and not sort and (np.diff(t) < 0).any():  # several trajectories one after another, most likely
        k = int(np.argmax(np.diff(t) < 0)) + 1
        raise DataError(f"{path}: column {time!r} goes back in time at row {k + 2} ({t[k - 1]:g} then {t[k]:g}) "
                        "and no group column is named: if the file holds several trajectories, name the column "
                        "that tells them apart (group=..., sparsedyn graph --group COLUMN); if it holds one "
                        "trajectory in another row order, ask for the rows sorted (sort=True, sparsedyn graph --sort)")
    x = np.stack([column(c) for c in feats], axis=1) if feats else np.empty((len(body), 0))
    ids = [row[col[group]].strip() for row in body] if group is not None else ["0"] * len(body)
    sel: dict[str, list[int]] = {}  # one pass over the rows: trajectory id -> its rows, in order of appearance
    for k, i in enumerate(ids):
        sel.setdefault(i, []).append(k)
    order = list(sel)
    return Series([t[sel[g]] for g in order], [x[sel[g]] for g in order], feats, order)


def _check_row_lengths(header: list[str], rows: list[list[str]], path: Path) -> None:
    """Every (non-blank) data row has the header's number of fields, empty trailing fields (a trailing
    separator) aside: a longer row is most often a value that holds the separator (``1,234`` in a
    comma file), which shifts every later value into the wrong column, and a shorter one a truncated file;
    either would otherwise be read as wrong or missing values without a word."""
    for k, row in enumerate(rows):
        used = len(row)
        while used > len(header) and not row[used - 1].strip():
            used -= 1
        if used != len(header):
            guess = "a value holding the separator, or an unnamed column?" if used > len(header) else "a truncated row?"
            raise DataError(f"{path}: row {k + 2} has {used} fields, the header {len(header)} ({guess})")


def _date_times(cells: list[str], not_numeric: DataError) -> np.ndarray:
    """A time column of ISO 8601 date-times (``2024-01-01 10:30``, ``2024-01-01T10:30:00.5``) as seconds since
    the earliest of them (the fields are autonomous: only differences count); empty cells are NaN. Anything
    else raises ``not_numeric``, the column's own error (so some cell is neither empty nor a number), with the
    accepted formats added."""
    refused = DataError(f"{not_numeric} (times must be numbers or ISO 8601 date-times)")
    if not all(not cell or re.match(r"\d{4}-\d{2}-\d{2}", cell) for cell in cells):  # numpy reads "7" as year 7
        raise refused
    try:
        stamps = np.array(cells, dtype="datetime64[ns]")
    except ValueError:
        raise refused from None
    empty = np.isnat(stamps)
    seconds = (stamps - stamps[~empty].min()).astype("timedelta64[ns]").astype(np.int64) / 1e9
    return np.where(empty, np.nan, seconds)
