"""From a table to a notebook's glue: one rule that names a table's cells.

The analysis functions of :mod:`wna` return tables (``pandas.DataFrame``) with
one row per item, indexed by the item's key. A notebook publishes their
cells for its prose and the reproduction report with :func:`glue_items`, so
that every glue key is built from the table by one stated rule, never by
string surgery.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

__all__ = ["glue_items"]


def glue_items(table: pd.DataFrame, columns: Sequence[str] | Mapping[str, str], *, name: str = "{row}_{column}",
               by: str | None = None, digits: int | None = None, fmt: str | None = None) -> dict:
    """``{key: value}`` for the cells of ``columns`` in every row of ``table``.

    ``columns``: column names, or ``{stem: column}`` to name a column's cells
    by another stem. The key is ``name`` filled in with ``{row}`` (the row's
    index values joined with "_", or the value of its ``by`` column) and
    ``{column}`` (the column's name or stem): ``("fc1", "increase")`` and
    "left" give "fc1_increase_left"; ``name="{column}_{row}"`` gives
    "left_fc1_increase". Values are plain Python objects: floats rounded to
    ``digits`` when given, then formatted with ``format(value, fmt)`` when
    ``fmt`` is given (``","``: thousands separators).
    """
    stems = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    missing = sorted(set(stems.values()) - set(table.columns))
    if missing:
        raise ValueError(f"no column(s) {missing} in the table; it has {list(table.columns)}")
    out = {}
    for idx in table.index:
        key = table.at[idx, by] if by is not None else idx
        row = "_".join(str(v) for v in (key if isinstance(key, tuple) else (key,)))
        for stem, col in stems.items():
            value = table.at[idx, col]  # one cell: an int column stays int
            value = value.item() if hasattr(value, "item") else value
            if isinstance(value, float) and digits is not None:
                value = round(value, digits)
            k = name.format(row=row, column=stem)
            if k in out:
                raise ValueError(f"two cells would be glued as {k!r}: name the rows or columns apart")
            out[k] = value if fmt is None else format(value, fmt)
    return out
