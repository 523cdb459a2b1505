"""Tables of the bias-map attack (§3.2, Fig. 6C, Table 2): ours beside the paper, and the variants.

:func:`table2_cells` puts the four sweeps of :func:`wna.attack.bias_map_attack` beside Table 2 as
printed, one row per (sweep, γ) cell; :func:`table2_table` lays them out as the paper does and
:func:`table2_errors` scores each sweep by its mean absolute difference from the paper's row.
:func:`attack_totals` counts the stimuli and the time behind them.

:func:`variant_sweep` runs each row of Table 2 several ways (:class:`Variant`: other scalings of
the patterns, maps from fewer noise images, another training run of the CNN; :func:`attack_variants`
lists the notebook's) and scores each the same way; :func:`variant_summary` picks the closest variant
per row. :func:`table2_glue` and :func:`variant_glue` name the numbers the book glues; every name is
built there, by the rules their docstrings state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import zoo
from .attack import SCALES, bias_map_attack
from .engine import Probe
from .paper import TABLE2, TABLE2_GAMMAS, table2_key
from .tables import glue_items

__all__ = ["ROWS", "row_name", "row_tag", "paper_rates", "table2_cells", "table2_table", "table2_errors",
           "table2_glue", "attack_totals", "map_patterns", "Variant", "OtherCNN", "other_cnns", "attack_variants",
           "variant_sweep", "VARIANT_INFO", "ERROR", "variant_summary", "GLUED_VARIANTS", "variant_glue"]

# Table 2's rows in the paper's order: (base, pattern)
ROWS = (("noise", "bias"), ("digits", "bias"), ("noise", "mean"), ("digits", "mean"))
ERROR = "mean |ours - paper|"  # the score of a sweep: mean over γ of |ours - the paper's|
VARIANT_INFO = ["base", "pattern", "key", "main"]  # the columns of variant_sweep that are not numbers


def row_name(base: str, pattern: str) -> str:
    """A Table 2 row as the tables show it: ``"noise + bias"``."""
    return f"{base} + {pattern}"


def row_tag(base: str, pattern: str) -> str:
    """A Table 2 row in glue names: ``"noise_bias"``."""
    return f"{base}_{pattern}"


def paper_rates(base: str, pattern: str, gammas) -> np.ndarray:
    """Table 2's printed fooling rates of one row at ``gammas`` (each one of 0, 0.1 … 1)."""
    out = []
    for g in np.asarray(gammas, dtype=np.float64).ravel():
        i = round(10 * float(g))
        if not (0 <= i < len(TABLE2_GAMMAS) and math.isclose(TABLE2_GAMMAS[i], g, abs_tol=1e-9)):
            raise ValueError(f"Table 2 has no column γ = {g} (γ: {list(TABLE2_GAMMAS)})")
        out.append(TABLE2[(base, pattern)][i])
    return np.array(out, dtype=np.float64)


def table2_cells(results: dict) -> pd.DataFrame:
    """Table 2 cell by cell (Fig. 6C): ``results`` maps ``(base, pattern)`` to an
    :class:`wna.attack.AttackResult`; one row per (sweep, swept γ), in the order of ``results``.

    Index ``key``: the cell's name (:func:`wna.paper.table2_key`, e.g. ``t2_noise_bias_g05``); columns
    ``base``, ``pattern``, ``row`` (:func:`row_name`), ``gamma``, ``paper`` (the printed rate),
    ``ours`` (our fooling rate) and ``difference`` (ours minus the paper's), fractions.
    """
    rows = []
    for (base, pattern), r in results.items():
        paper = paper_rates(base, pattern, r.gammas)
        for g, p, ours in zip(r.gammas, paper, r.rate):
            rows.append({"key": table2_key(base, pattern, g), "base": base, "pattern": pattern,
                         "row": row_name(base, pattern), "gamma": float(g), "paper": float(p),
                         "ours": float(ours), "difference": float(ours) - float(p)})
    return pd.DataFrame(rows).set_index("key")


def table2_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as printed, with ours: for each row of :func:`table2_cells` three lines (``paper``,
    ``ours``, ``difference``) over the columns γ (``"0.5"``); index (``row``, ``""``)."""
    lines = []
    for row, part in cells.groupby("row", sort=False):
        for what in ("paper", "ours", "difference"):
            lines.append({"row": row, "": what, **{f"{g:.1f}": v for g, v in zip(part["gamma"], part[what])}})
    return pd.DataFrame(lines).set_index(["row", ""])


def table2_errors(cells: pd.DataFrame) -> pd.DataFrame:
    """Per row of :func:`table2_cells`: :data:`ERROR`, the mean over γ of |ours - paper|.

    Index ``tag`` (:func:`row_tag`); columns ``base``, ``pattern``, ``row`` and :data:`ERROR`.
    """
    rows = []
    for (base, pattern), part in cells.groupby(["base", "pattern"], sort=False):
        err = np.mean(np.abs(part["ours"].to_numpy() - part["paper"].to_numpy()))
        rows.append({"tag": row_tag(base, pattern), "base": base, "pattern": pattern,
                     "row": row_name(base, pattern), ERROR: float(err)})
    return pd.DataFrame(rows).set_index("tag")


def table2_glue(cells: pd.DataFrame, errors: pd.DataFrame, digits: int = 3) -> dict:
    """The glued numbers of Table 2: for each cell ``key`` of :func:`table2_cells`, ``key`` (ours),
    ``paper_<key>`` (the paper's, as printed) and ``<key>_diff``; for each row ``tag`` of
    :func:`table2_errors`, ``t2_<tag>_mad``. Ours, differences and errors rounded to ``digits``."""
    return {**glue_items(cells, ["ours"], name="{row}", digits=digits),
            **glue_items(cells.astype({"paper": float}), ["paper"], name="paper_{row}"),
            **glue_items(cells, ["difference"], name="{row}_diff", digits=digits),
            **glue_items(errors, [ERROR], name="t2_{row}_mad", digits=digits)}


def attack_totals(results) -> pd.DataFrame:
    """One row: ``stimuli`` through the model in all ``results`` (:class:`wna.attack.AttackResult`s,
    every pattern's copy of a base image counted), ``seconds`` (their sweeps' own times, summed) and
    ``stimuli_per_second``."""
    results = list(results)
    stimuli = sum(int(r.counts.sum()) for r in results)
    seconds = float(sum(r.meta["seconds"] for r in results))
    return pd.DataFrame({"stimuli": [stimuli], "seconds": [seconds],
                         "stimuli_per_second": [stimuli / seconds if seconds > 0 else np.nan]})


def map_patterns(maps) -> tuple[torch.Tensor, list]:
    """The bias maps of :class:`wna.ClassificationImages` ``maps`` that exist, and their classes: a class
    that received no stimulus has no map (Fig. 6: it drops out of the bias rows)."""
    classes = [c for c in range(len(maps.count)) if int(maps.count[c]) > 0]
    return maps.mean[classes], classes


@dataclass
class Variant:
    """One way of running the Table 2 rows of one pattern kind, for :func:`variant_sweep`.

    ``pattern``: ``"bias"`` or ``"mean"`` (scored against both rows of that kind, noise and digits);
    ``label``: its name in the table; ``patterns``, ``classes``, ``scale``: as for
    :func:`wna.attack.bias_map_attack`; ``model``: a model or :class:`wna.Probe` (None:
    :func:`variant_sweep`'s); ``key``: the stem of its glued errors (:func:`variant_glue`), or None;
    ``main``: the setting of the main sweeps.
    """

    pattern: str
    label: str
    patterns: torch.Tensor
    classes: list
    scale: str
    model: object = None
    key: str | None = None
    main: bool = False


@dataclass
class OtherCNN:
    """Another training run of the CNN for :func:`attack_variants`: ``name`` (e.g. "CNN trained 4 epochs
    (seed 2)"), the ``model`` (or its :class:`wna.Probe`) and its classification images ``maps``."""

    name: str
    model: object
    maps: object


def other_cnns(epochs, seed: int, noise, n_maps: int, *, map_seed: int, weighting: str = "none",
               n_train=None, batch_size: int | None = None) -> list[OtherCNN]:
    """Other training runs of the zoo's ``mnist_cnn`` (Fig. 6's last section): one :class:`OtherCNN` per
    number of ``epochs`` (training ``seed``), named "CNN trained <epochs> epochs (seed <seed>)", each
    with an open :class:`wna.Probe` (close it when done) and its classification images of ``n_maps``
    ``noise`` images (seed ``map_seed``)."""
    out = []
    for e in epochs:
        p = Probe(zoo.load("mnist_cnn", epochs=e, seed=seed, n_train=n_train), batch_size=batch_size, progress=False)
        maps = p.classification_images(noise, n_maps, seed=map_seed, weighting=weighting)
        out.append(OtherCNN(f"CNN trained {e} epochs (seed {seed})", p, maps))
    return out


def attack_variants(maps, mean_digits, *, map_scale: str = "minmax", mean_scale: str = "minmax",
                    fewer: dict | None = None, cnns=()) -> list[Variant]:
    """The variants of Fig. 6's last section, main settings first within each kind.

    Bias maps (``maps``, classification images of the main CNN) under every scaling of
    :data:`wna.attack.SCALES` (key: the scale); maps from fewer noise images (``fewer``:
    ``{n: classification images}``, key ``maps_<n>``); the mean digits unscaled, min-max and 8-bit
    (key ``mean_<scale>``); for each of ``cnns`` (:class:`OtherCNN`) its own maps, scaled with
    ``map_scale`` and "viridis", and the mean digits on it (keys ``epoch_<scale>`` and ``epoch_mean``,
    the first CNN only).
    """
    patterns, classes = map_patterns(maps)
    out = [Variant("bias", f"maps {s}", patterns, classes, s, key=s, main=s == map_scale)
           for s in dict.fromkeys([map_scale, *SCALES])]
    for n, m in sorted((fewer or {}).items()):
        out.append(Variant("bias", f"maps from {n:,} noise images", *map_patterns(m), map_scale, key=f"maps_{n}"))
    digit_classes = list(range(len(mean_digits)))
    out += [Variant("mean", f"mean digits {s}", mean_digits, digit_classes, s, key=f"mean_{s}",
                    main=s == mean_scale) for s in dict.fromkeys([mean_scale, "none", "minmax8"])]
    for i, cnn in enumerate(cnns):
        own, cls = map_patterns(cnn.maps)
        for s in dict.fromkeys([map_scale, "viridis"]):
            out.append(Variant("bias", f"{cnn.name}, maps of {int(cnn.maps.n):,}, {s}", own, cls, s, cnn.model,
                               key=f"epoch_{s}" if i == 0 else None))
        out.append(Variant("mean", cnn.name, mean_digits, digit_classes, mean_scale, cnn.model,
                           key="epoch_mean" if i == 0 else None))
    return out


def variant_sweep(model, variants, bases: dict, gammas, *, n_samples: int, seed: int = 0) -> pd.DataFrame:
    """Fooling rates of each :class:`Variant` on each base, scored against Table 2 (Fig. 6, Table 2).

    ``bases``: ``{"noise": generator, "digits": images}`` (a tensor base gives at most its length);
    every cell runs :func:`wna.attack.bias_map_attack` with ``n_samples`` stimuli and ``seed``.
    Index (``row``, ``variant``), rows sorted by name (variants in their order within a row);
    columns :data:`VARIANT_INFO` (``base``, ``pattern``, the glue ``key`` and ``main``), one per γ
    (``"0.5"``, the fooling rate) and :data:`ERROR` (mean over ``gammas`` of |ours - paper|).
    """
    rows = []
    for v in variants:
        for base, stim in bases.items():
            n = min(n_samples, len(stim)) if isinstance(stim, torch.Tensor) else n_samples
            r = bias_map_attack(v.model if v.model is not None else model, stim, v.patterns, gammas,
                                classes=v.classes, n_samples=n, seed=seed, scale=v.scale, progress=False)
            ref = paper_rates(base, v.pattern, gammas)
            rows.append({"row": row_name(base, v.pattern), "variant": v.label, "base": base,
                         "pattern": v.pattern, "key": v.key, "main": v.main,
                         **{f"{g:g}": x for g, x in zip(gammas, r.rate)},
                         ERROR: float(np.abs(r.rate - ref).mean())})
    return pd.DataFrame(rows).sort_values(["row"], kind="stable").set_index(["row", "variant"])


def variant_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per row of :func:`variant_sweep`: the ``best`` variant (least :data:`ERROR`, the first on ties),
    its error ``best_err`` and that of the ``main`` setting, ``main_err`` (NaN if it was not run).

    Index ``tag`` (:func:`row_tag`), in the order of :data:`ROWS`, rows that were run only.
    """
    out = []
    for base, pattern in ROWS:
        row = row_name(base, pattern)
        if row not in table.index.get_level_values("row"):
            continue
        part = table.loc[row]
        main = part.loc[part["main"], ERROR]
        out.append({"tag": row_tag(base, pattern), "row": row, "best": part[ERROR].idxmin(),
                    "best_err": float(part[ERROR].min()), "main_err": float(main.iloc[0]) if len(main) else np.nan})
    return pd.DataFrame(out).set_index("tag")


# stems of variant_glue's names that are always glued (NaN where the variant was not run)
GLUED_VARIANTS = ("viridis", "mean_none", "epoch_viridis", "epoch_minmax")


def variant_glue(table: pd.DataFrame, summary: pd.DataFrame, digits: int = 3) -> dict:
    """The glued numbers of the variants: for each row ``tag`` of :func:`variant_summary`,
    ``best_<tag>`` (the label), ``best_<tag>_err`` and ``main_<tag>_err``; for each variant of
    :func:`variant_sweep` with a ``key``, ``<key>_<base>_err`` (e.g. ``viridis_noise_err``), and NaN for the
    stems of :data:`GLUED_VARIANTS` on noise and digits where they were not run. Errors rounded to ``digits``.
    """
    out = {f"{stem}_{base}_err": float("nan") for stem in GLUED_VARIANTS for base in ("noise", "digits")}
    out.update(glue_items(summary, {"best": "best"}, name="{column}_{row}"))
    out.update(glue_items(summary, {"best": "best_err", "main": "main_err"}, name="{column}_{row}_err",
                          digits=digits))
    keyed = table[table["key"].notna()]
    out.update(glue_items(keyed.assign(name=keyed["key"] + "_" + keyed["base"]), [ERROR],
                          name="{row}_err", by="name", digits=digits))
    return out
