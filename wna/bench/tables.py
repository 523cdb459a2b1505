"""The benchmarks' figures as tables, for the book's Performance chapter.

:func:`probe_table` turns what :func:`wna.bench.bench_probe` returns into
one row per way of running the probe; :func:`models_table` does the same for
:func:`wna.bench.bench_models`. The rates are this machine's, measured when
the function ran: they are not reproducible numbers, and the book keeps them
out of its reproduction report.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["PROBE_ROWS", "probe_table", "models_table"]

# bench_probe's row names, in the order of the table, and what each one times
PROBE_ROWS = {
    "reference": "reference loop (the authors' way)",
    "probe_none": "probe, weighting='none' (default fast path)",
    "probe_confidence": "probe, weighting='confidence'",
    "probe_compile": "probe, fast='compile', its compile included",
    "probe_compile_steady": "probe, fast='compile', engine already built",
    "probe_onnx": "probe, fast='onnx', its export included",
    "probe_onnx_steady": "probe, fast='onnx', engine already built",
}


def probe_table(res: dict) -> pd.DataFrame:
    """One row per way of running the probe that ``res`` timed (index: :data:`PROBE_ROWS`' keys):
    ``what``, ``images_per_s``, ``gflops`` and ``x_reference`` (the rate over the reference
    loop's; 1 for the reference itself); rows the run skipped are left out."""
    rows = []
    for key, what in PROBE_ROWS.items():
        if f"{key}_img_s" not in res:
            continue
        rate = res[f"{key}_img_s"]
        rows.append({"row": key, "what": what, "images_per_s": rate, "gflops": res[f"{key}_gflops"],
                     "x_reference": rate / res["reference_img_s"]})
    return pd.DataFrame(rows).set_index("row")


def models_table(out: dict) -> pd.DataFrame:
    """One row per (model, size, variant) that :func:`wna.bench.bench_models` timed: ``images_per_s``,
    ``x_plain``, ``setup_s``, ``fast_path`` and ``same_as_plain`` (counts and sums equal the plain
    model's)."""
    rows = [{"model": name, "size": size, "variant": v, "images_per_s": r["img_s"], "x_plain": r["ratio"],
             "setup_s": r["setup_s"], "fast_path": r["fast_path"], "same_as_plain": bool(r["same"])}
            for (name, size, v), r in out.items()]
    return pd.DataFrame(rows, columns=["model", "size", "variant", "images_per_s", "x_plain", "setup_s",
                                       "fast_path", "same_as_plain"])
