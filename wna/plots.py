"""Figure helpers shared by the notebooks."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["map_grid", "map_titles", "confusion_matrices", "binary_cells_grid", "convergence", "standard_errors",
           "class_shares", "psychometric_grid", "save", "setup",
           "plot_examples", "plot_histograms", "plot_rates", "plot_ratios", "layer_panels"]


def setup() -> None:
    """Deterministic figure output (fixed SVG hash salt, no dates)."""
    matplotlib.rcParams["svg.hashsalt"] = "wna"
    matplotlib.rcParams["figure.dpi"] = 100
    matplotlib.rcParams["savefig.bbox"] = "tight"


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _as_image(m: np.ndarray) -> np.ndarray:
    if m.ndim == 3 and m.shape[0] in (1, 3):
        m = np.moveaxis(m, 0, -1)
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    return m


def map_grid(maps, titles=None, ncols: int = 5, cmap: str = "gray", normalize: bool = True,
             size: float = 1.8, suptitle: str | None = None):
    """Show maps ``(K, [C,] H, W)`` in a grid, each min-max normalised unless told not to.

    With ``normalize=False`` the values are drawn as they are, every map of
    the grid on one grey scale: [0, 1] for images in [0, 1] (0 black, 1
    white), else the grid's overall range; contrasts are comparable across
    the grid, never stretched per map. A map that is all NaN (a class that
    received no stimulus) is drawn blank with "no samples".
    """
    maps = _np(maps)
    k = maps.shape[0]
    scale = {}
    if not normalize and np.isfinite(maps).any():
        lo, hi = float(np.nanmin(maps)), float(np.nanmax(maps))
        scale = {"vmin": min(lo, 0.0), "vmax": max(hi, 1.0)}
    nrows = math.ceil(k / ncols)
    lines = max((str(t).count("\n") + 1 for t in titles), default=1) if titles is not None else 1
    height = (size + 0.25 + 0.15 * (lines - 1)) * nrows + 0.3 * bool(suptitle)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= k:
            ax.axis("off")
            continue
        m = _as_image(maps[i])
        if np.isnan(m).all():
            ax.set_box_aspect(m.shape[0] / m.shape[1])  # the size of the drawn maps
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        else:
            if normalize:
                lo, hi = np.nanmin(m), np.nanmax(m)
                m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
            grey = m.ndim == 2
            ax.imshow(m, cmap=cmap if grey else None, interpolation="nearest", **(scale if grey else {}))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def map_titles(count, assigned=None, share: bool = False, names=None) -> list[str]:
    """Titles for a grid of classification images, one per class ``k``.

    ``"k → a, |n|"``: the class ``a`` a model assigns to the map itself
    (``assigned``, -1 for an empty map, drawn "–"; left out when None) and
    the number ``n`` of stimuli classified as ``k``, or their percentage when
    ``share``. With ``names`` (one per class) the classes are named and the
    count goes on a second line; ``count=None`` leaves it out.
    """
    if count is not None:
        count = [int(c) for c in (count.tolist() if hasattr(count, "tolist") else count)]
    total = max(sum(count), 1) if count is not None else 1
    label = str if names is None else (lambda c: names[c])
    out = []
    for k in range(len(count) if count is not None else len(assigned)):
        title = label(k)
        if assigned is not None:
            a = int(assigned[k])
            title += f" → {'–' if a < 0 else label(a)}"
        if count is not None:
            n = f"{100 * count[k] / total:.2f}%" if share else f"|{count[k]:,}|"
            title += ("\n" if names is not None else ": " if share else ", ") + n
        out.append(title)
    return out


def confusion_matrices(results, class_names=None, size: float = 3.0):
    """One heat map per ``(name, accuracy, confusion)``, rows true, columns predicted.

    ``results`` is a list (one row of panels) or a dict ``{row label: list}``
    (one row per label, e.g. one per template-matching rule); each row of a
    matrix is normalised to the fraction of its true class.
    """
    rows = results if isinstance(results, dict) else {None: results}
    nrows, ncols = len(rows), max(len(r) for r in rows.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.4) * nrows), squeeze=False)
    for r, (label, row) in enumerate(rows.items()):
        for c, ax in enumerate(axes[r]):
            if c >= len(row):
                ax.axis("off")
                continue
            name, acc, conf = row[c]
            m = _np(conf)
            totals = m.sum(1, keepdims=True)
            frac = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
            ax.imshow(frac, cmap="viridis", vmin=0, vmax=1)
            title = f"{name}\nacc {100 * acc:.1f}%"
            ax.set_title(title if label is None else f"{label}: {title}", fontsize=9)
            ticks = range(m.shape[0])
            labels = class_names or [str(t) for t in ticks]
            ax.set_xticks(list(ticks), labels, fontsize=7, rotation=90 if class_names else 0)
            ax.set_yticks(list(ticks), labels, fontsize=7)
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("true", fontsize=8)
    fig.tight_layout()
    return fig


def save(fig, path) -> Path:
    """Save a figure deterministically (no date metadata)."""
    setup()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Date": None} if path.suffix in (".svg", ".pdf") else {}
    fig.savefig(path, metadata=meta)
    return path


def binary_cells_grid(results, digits, size: float = 1.5):
    """Fig. 1 / Fig. 12: one row per gamma of a binary experiment.

    Columns: the mean stimulus of each (signal, response) cell, the mean
    stimulus answered ``digits[1]`` minus the mean answered ``digits[0]``,
    Eq. 1 on the noise alone ("*"), and Eq. 2 (correlation). ``results`` maps
    gamma to :class:`wna.probe.StimulusResponseCells`.
    """
    a, b = digits
    cols = [f"{a}→{a}", f"{a}→{b}", f"{b}→{a}", f"{b}→{b}", f"t̄·{b} − t̄·{a}", "* (Eq. 1)", "corr (Eq. 2)"]
    rows = list(results.items())
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(size * len(cols), size * len(rows) + 0.4),
                             squeeze=False)
    for r, (gamma, cells) in enumerate(rows):
        m = cells.stimulus_means
        panels = [m[0, 0], m[0, 1], m[1, 0], m[1, 1], cells.stimulus_difference,
                  cells.classification_image, cells.correlation]
        for c, (ax, p) in enumerate(zip(axes[r], panels)):
            img = _as_image(_np(p))
            ax.set_xticks([])
            ax.set_yticks([])
            if np.isnan(img).all():
                ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes, fontsize=7)
            elif c < 4:
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                lim = np.nanmax(np.abs(img)) or 1.0
                ax.imshow(img, cmap="viridis", vmin=-lim, vmax=lim, interpolation="nearest")
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"γ = {gamma:g}", fontsize=8)
        for c, n_cell in enumerate(cells.count.flatten().tolist()):  # trials per cell
            axes[r][c].set_xlabel(f"n={n_cell:,}", fontsize=6)
    fig.tight_layout()
    return fig


def convergence(ns, cosines, dim: int, k: float | None = None, labels=None, size=(6.0, 3.6)):
    """Fig. 4: each class's map cosine to the largest-N map against N (log scale), with the
    closed form of a linear observer (known answer 4, ``book/methods.md``) for k = 1 and, if given, a fitted k."""
    from .probe import expected_cosine
    ns = list(ns)
    c = _np(cosines)
    fig, ax = plt.subplots(figsize=size)
    for j in range(c.shape[1]):
        ax.plot(ns, c[:, j], marker="o", ms=3, lw=1, alpha=0.8,
                label=str(j) if labels is None else labels[j])
    grid = np.geomspace(ns[0], ns[-1], 200)
    for kk, style in ((1.0, "k--"), (k, "k:")):
        if kk is not None:
            ax.plot(grid, expected_cosine(grid, dim, kk, reference=ns[-1]), style, lw=1.5,
                    label=f"linear observer, k={kk:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("noise images N")
    ax.set_ylabel(f"cosine to the map at N={ns[-1]:,}")
    ax.set_ylim(min(0.0, float(np.nanmin(c))), 1.02)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def standard_errors(results: dict, size=(5.5, 3.4)):
    """Fig. 4: the median per-pixel standard error of each class's map against the stimuli
    assigned to it, at every N of ``{N: ClassificationImages}``, with sqrt(1/12)/sqrt(n)
    (the standard error of the mean of n U[0, 1] pixels) drawn over it."""
    ns = sorted(results)
    fig, ax = plt.subplots(figsize=size)
    for d in range(results[ns[-1]].num_classes):
        n_c = [int(results[n].count[d]) for n in ns]
        sem = [float(results[n].sem[d].nanmedian()) if k > 1 else np.nan for k, n in zip(n_c, ns)]
        ax.loglog(n_c, sem, "o", ms=3, label=str(d))
    grid = np.geomspace(2, ns[-1], 50)
    ax.loglog(grid, np.sqrt(1 / 12) / np.sqrt(grid), "k--", lw=1, label="σ/√n")
    ax.set(xlabel="stimuli assigned to the class, n", ylabel="median standard error per pixel")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def class_shares(panels: dict, class_names, size=(10.0, 3.2)):
    """Fig. 16: per panel ``{title: (ours: ClassificationImages, paper counts or None)}``, the
    share of the stimuli assigned to each class, ours beside the paper's (log scale)."""
    fig, axes = plt.subplots(1, len(panels), figsize=size, sharey=True, squeeze=False)
    pos = np.arange(len(class_names))
    for ax, (title, (ci, theirs)) in zip(axes[0], panels.items()):
        ax.bar(pos - 0.2, 100 * _np(ci.frequency), 0.4, label=f"ours ({ci.n:,} images)")
        if theirs is not None:
            theirs = np.asarray(theirs, dtype=float)
            ax.bar(pos + 0.2, 100 * theirs / theirs.sum(), 0.4, label=f"paper ({int(theirs.sum()):,})")
        ax.set_xticks(pos, class_names, rotation=45, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_yscale("log")
        ax.set_ylim(1e-4, 100)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("share of the stimuli (%)")
    fig.tight_layout()
    return fig


def psychometric_grid(panels: dict, ncols: int = 10, size: float = 1.5, cmap: str = "coolwarm",
                      suptitle: str | None = None):
    """Figs. 9, 23-25: psychometric curves, one panel per ``{title: PsychometricCurves}``.

    Each panel shows the fraction of stimuli classified as the target against the signal level
    g, one curve per stimulation k, coloured by k (redder: larger, as in the paper); one colour
    bar for k serves every panel.
    """
    items = list(panels.items())
    ncols = min(ncols, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 0.8, size * nrows + 0.4),
                             sharex=True, sharey=True, squeeze=False)
    kmax = max(max(float(k) for k in c.ks) for _, c in items) or 1.0
    colours = plt.get_cmap(cmap)
    for ax, (title, c) in zip(axes.flat, items):
        for k, frac in zip(c.ks, c.fraction):
            ax.plot(c.levels, frac, lw=1, color=colours(float(k) / kmax))
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(items):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("g", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction target", fontsize=8)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, kmax), colours),
                       ax=axes, fraction=0.02, pad=0.01)
    bar.set_label("k", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_examples(images, titles, ncols: int, size: float = 1.1, suptitle: str | None = None):
    """Grey images ``(N, 1, H, W)`` in a grid on one fixed scale, black 0 to white 1 (Fig. 17),
    so that the grids show how visible a pattern is at each γ."""
    images = torch.as_tensor(images).reshape(len(images), *images.shape[-2:]).numpy()
    nrows = math.ceil(len(images) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.25) * nrows),
                             squeeze=False)
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig

def plot_histograms(results: dict, gamma: float, size: float = 1.25, suptitle: str | None = None):
    """Fig. 6A/B: one column per sweep (``{title: AttackResult}``); the first row is the predicted
    classes of the intact base (γ = 0), row ``k + 1`` those at ``gamma`` with pattern ``k``, whose
    target bar is drawn dark."""
    first = next(iter(results.values()))
    K, C = first.counts.shape[1:]
    figsize = (2.2 * size * len(results), size * (K + 1) * 0.62)
    fig, axes = plt.subplots(K + 1, len(results), figsize=figsize, squeeze=False, sharex=True,
                             sharey=True)
    for j, (title, r) in enumerate(results.items()):
        rows = [r.histogram(0.0)[0], *r.histogram(gamma)]
        for i, h in enumerate(rows):
            ax = axes[i, j]
            colors = ["0.7"] * C
            if i > 0:
                colors[r.classes[i - 1]] = "C3"
            ax.bar(range(C), h, color=colors)
            ax.set_ylim(0, 1)
            ax.set_yticks([0, 1])
            ax.set_xticks(range(C))
            ax.tick_params(labelsize=6)
            label = "intact" if i == 0 else f"+ {r.classes[i - 1]}"
            ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
        axes[0, j].set_title(f"{title}\n(row 1: γ = 0; rows 2-: γ = {gamma:g})", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig

def plot_rates(results: dict, paper: dict | None = None, size=(6.0, 3.6)):
    """Fig. 6C: the fooling rate against γ, ours solid (``{label: AttackResult}``), the paper's
    dashed (``{label: rates}``, same labels and γ as ours), chance dotted."""
    fig, ax = plt.subplots(figsize=size)
    for i, (label, r) in enumerate(results.items()):
        ax.plot(r.gammas, r.rate, "-o", color=f"C{i}", ms=3, label=f"{label} (ours)")
        if paper and label in paper:
            ax.plot(r.gammas, paper[label], "--", color=f"C{i}", label=f"{label} (paper)")
    ax.axhline(1 / next(iter(results.values())).counts.shape[2], color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("γ")
    ax.set_ylabel("fooling rate")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig

def plot_ratios(sweeps: dict, class_names, size=(3.0, 2.6)):
    """Fig. 21: the misclassification ratio against γ, a panel per layer (``{title: sweep}``),
    one line per class (classes without an activation left out)."""
    fig, axes = plt.subplots(1, len(sweeps), figsize=(size[0] * len(sweeps) + 1.2, size[1]),
                             sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (title, s) in zip(axes[0], sweeps.items()):
        for c, r in enumerate(s.ratio):
            if not np.isnan(r).all():
                ax.plot(s.gammas, r, marker=".", lw=1, color=colours(c % 10), label=class_names[c])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("γ (share of the real image)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("misclassification ratio", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1 - 1.0 / (size[0] * len(sweeps) + 1.2), 1))
    return fig


def layer_panels(layers, size=(11.0, 3.0)):
    """Fig. 20's bottom panels from :func:`wna.injection_tables.layer_table`, one point per layer (the
    paper's names): the mean L2 distance between classes (noise, real), the same per unit, and the
    cosine between a class's mean noise and mean real activation (raw means, contrasts) as bars."""
    fig, axes = plt.subplots(1, 3, figsize=size)
    panels = {"mean L2 distance between classes": {"noise": "dist_noise", "real": "dist_real"},
              "the same, per unit": {"noise": "unit_noise", "real": "unit_real"},
              "cosine(noise mean, real mean)": {"means": "cos", "contrasts": "ccos"}}
    for ax, (title, cols) in zip(axes, panels.items()):
        table = layers.set_index("paper")[list(cols.values())].set_axis(list(cols), axis=1).rename_axis(None)
        table.plot.bar(ax=ax, rot=0) if "means" in cols else table.plot(ax=ax, marker="o")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
