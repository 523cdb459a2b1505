"""Tables of Figs. 7C, 20 and 21: the layers compared, the classes ranked, the paper's claims checked.

:func:`layer_table` compares each layer's mean noise and real activations (Fig. 20: the mean L2
distance between classes, per unit, and the cosine between a class's noise and real means, raw and
as contrasts); :func:`top_layers` names the layer that leads each column. :func:`ease_cells` turns
the sweeps of :func:`wna.activations.injection_sweep` into Fig. 21's words as numbers, one row per
(class, layer): the *ease* (the mean misclassification ratio over the γ grid) and the *fooling γ*;
:func:`class_ease` ranks the classes and :func:`ease_summary` states what the paper says of them.
:func:`first_correct` and :func:`flip_gamma` find Fig. 7C's example; :func:`claims` checks the
paper's sentences. The ``*_glue`` functions name the glued numbers by the rules their docstrings state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .activations import INPUT, ActivationMeans, inject, mean_class_distance
from .stimuli import mix
from .templates import cosines

__all__ = ["NOT_MEASURED", "noise_counts", "layer_table", "top_layers", "layer_glue", "ease_cells", "class_ease", "ease_grid",
           "ease_summary", "ease_glue", "first_correct", "flip_gamma", "injected_class", "flip_panels", "claims"]

NOT_MEASURED = "—"  # a glued cell of a class without a noise image (or a γ that never fools)
FOOLING_LEVEL = 0.5  # the fooling γ: the largest γ at which at least half the images are fooled


def noise_counts(noise: ActivationMeans, classes) -> dict:
    """Where the noise went (Fig. 20's top row): ``empty_classes`` (the classes no noise image was
    assigned to, ``"none"`` if every class got one), ``n_empty``, ``top_name`` (the class most noise
    went to, the first on a tie) and ``top_share`` (its share of the noise in %, 1 decimal)."""
    empty = [classes[c] for c in range(len(noise.count)) if noise.count[c] == 0]
    top = int(noise.count.argmax())
    return {"empty_classes": ", ".join(empty) or "none", "n_empty": len(empty), "top_name": classes[top],
            "top_share": round(100 * float(noise.count[top]) / noise.n, 1)}


def layer_table(noise: ActivationMeans, real: ActivationMeans, names: dict) -> pd.DataFrame:
    """Fig. 20 per layer (index: the layers of ``names``, ``{layer: the paper's name}``, in order).

    Columns: ``paper``; ``dist_noise``, ``dist_real`` (the mean L2 distance between the means of two
    different classes, :func:`wna.activations.mean_class_distance`); ``unit_noise``, ``unit_real``
    (the same divided by sqrt(units)); ``cos`` (the cosine between a class's mean noise and mean real
    activation, averaged over the classes that received noise) and ``ccos`` (the same of *contrasts*:
    each class's mean minus the mean over those classes).
    """
    has = noise.count > 0
    nm, rm = noise.mean, real.mean
    dist = mean_class_distance(noise), mean_class_distance(real)
    unit = mean_class_distance(noise, True), mean_class_distance(real, True)

    def contrast(m):
        return m[has] - m[has].mean(0)

    rows = {la: {"paper": names[la], "dist_noise": dist[0][la], "dist_real": dist[1][la],
                 "unit_noise": unit[0][la], "unit_real": unit[1][la],
                 "cos": float(cosines(nm[la][has], rm[la][has]).mean()),
                 "ccos": float(cosines(contrast(nm[la]), contrast(rm[la])).mean())} for la in names}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("layer")


# the claims of top_layers: {claim: the column of layer_table whose largest value names the layer}
TOP_COLUMNS = {"most_alike": "ccos", "most_alike_raw": "cos", "dist_top_noise": "dist_noise",
               "dist_top_real": "dist_real", "unit_top_noise": "unit_noise", "unit_top_real": "unit_real"}


def top_layers(table: pd.DataFrame) -> dict[str, str]:
    """For each claim of :data:`TOP_COLUMNS`, the paper's name of the layer with the largest value of
    its column in :func:`layer_table` (the first such layer on a tie)."""
    return {k: table.loc[max(table.index, key=lambda la: table.at[la, col]), "paper"]
            for k, col in TOP_COLUMNS.items()}


LAYER_DIGITS = {"dist_noise": 3, "dist_real": 3, "unit_noise": 4, "unit_real": 4, "cos": 3, "ccos": 3}


def layer_glue(table: pd.DataFrame) -> dict:
    """Glued numbers of :func:`layer_table`: ``{column}_{layer}`` for each column of
    :data:`LAYER_DIGITS`, rounded to its digits."""
    return {f"{col}_{la}": round(float(table.at[la, col]), d)
            for la in table.index for col, d in LAYER_DIGITS.items()}


def ease_cells(sweeps: dict, names: dict, level: float = FOOLING_LEVEL) -> pd.DataFrame:
    """Fig. 21 in numbers, one row per (class, layer) of ``sweeps`` (``{layer: InjectionSweep}``).

    Columns: ``cls``, ``layer``, ``paper`` (``names[layer]``), ``ease`` (the mean
    misclassification ratio over the γ grid, the area under the curve; NaN: no noise image) and
    ``fool`` (the largest γ whose ratio is at least ``level``; NaN where none is).
    """
    rows = []
    for la, s in sweeps.items():
        fool = s.fooling_gamma(level)
        for c, r in enumerate(s.ratio):
            rows.append({"cls": c, "layer": la, "paper": names[la], "ease": float(r.mean()),
                         "fool": float(fool[c])})
    return pd.DataFrame(rows)


def class_ease(cells: pd.DataFrame) -> pd.DataFrame:
    """Per class (index ``cls``): ``measured`` (an ease at every layer), ``ease`` (the mean over the
    layers), ``strongest`` (the paper's name of the layer with the largest ease, the first on a tie)
    and ``rank`` (1: the easiest; ties keep the class order; 0 where not measured)."""
    out = {}
    for c, g in cells.groupby("cls", sort=True):
        e = g["ease"].to_numpy()
        measured = not np.isnan(e).any()
        out[c] = {"measured": measured, "ease": float(e.mean()) if measured else np.nan,
                  "strongest": g["paper"].iloc[int(e.argmax())] if measured else None}
    table = pd.DataFrame.from_dict(out, orient="index").rename_axis("cls")
    ranked = sorted(table.index[table["measured"]], key=lambda c: -table.at[c, "ease"])
    table["rank"] = 0
    for i, c in enumerate(ranked):
        table.at[c, "rank"] = i + 1
    return table


def ease_grid(cells: pd.DataFrame, table: pd.DataFrame, classes) -> pd.DataFrame:
    """Fig. 21 as one table, a row per class (named by ``classes``): the ease and fooling γ at each
    layer (columns ``"ease <layer>"``, ``"fool <layer>"``, the paper's layer names) beside
    :func:`class_ease`'s ``ease``, ``strongest`` and ``rank``."""
    grid = cells.pivot(index="cls", columns="paper", values=["ease", "fool"])
    grid.columns = [f"{k} {la}" for k, la in grid.columns]
    return grid.join(table[["ease", "strongest", "rank"]]).rename(index=dict(enumerate(classes)))


def ease_summary(table: pd.DataFrame, classes, named: dict) -> dict:
    """The paper's words on Fig. 21 from :func:`class_ease`: the ``easiest`` and ``hardest`` class,
    ``rank_<name>`` (``"k of n"`` or ``"not measured"``) for each ``{name: class}`` of ``named``,
    ``n_measured``, and the distinct strongest layers (``n_strongest_layers``, ``strongest_layers``)."""
    m = table[table["measured"]].sort_values("rank")
    n = len(m)
    layers = sorted(set(m["strongest"]))
    out = {"easiest": classes[m.index[0]], "hardest": classes[m.index[-1]]}
    for name, c in named.items():
        out[f"rank_{name}"] = f"{table.at[c, 'rank']} of {n}" if table.at[c, "measured"] else "not measured"
    return {**out, "n_measured": n, "n_strongest_layers": len(layers), "strongest_layers": ", ".join(layers)}


def ease_glue(cells: pd.DataFrame, table: pd.DataFrame) -> dict:
    """Glued cells of Fig. 21 as text: ``ease_{cls}_{layer}`` (3 decimals) and ``fool_{cls}_{layer}``
    (1 decimal) from :func:`ease_cells`, ``ease_{cls}`` and ``strongest_{cls}`` from
    :func:`class_ease`; :data:`NOT_MEASURED` for a NaN, ``"no noise image"`` for a class not measured."""
    out = {}
    for r in cells.itertuples():
        out[f"ease_{r.cls}_{r.layer}"] = NOT_MEASURED if np.isnan(r.ease) else f"{r.ease:.3f}"
        out[f"fool_{r.cls}_{r.layer}"] = NOT_MEASURED if np.isnan(r.fool) else f"{r.fool:.1f}"
    for c, r in table.iterrows():
        out[f"ease_{c}"] = f"{r['ease']:.3f}" if r["measured"] else NOT_MEASURED
        out[f"strongest_{c}"] = r["strongest"] if r["measured"] else "no noise image"
    return out


def first_correct(model: torch.nn.Module, images, labels, cls: int, n: int = 200) -> torch.Tensor:
    """Fig. 7C's source: the first of the first ``n`` images of class ``cls`` that ``model`` calls
    ``cls`` (``(1, *shape)``)."""
    idx = (torch.as_tensor(labels) == cls).nonzero()[:n, 0]
    with torch.inference_mode():
        pred = model.eval()(images[idx]).argmax(1)
    return images[idx[pred == cls][0]][None]


def flip_gamma(model: torch.nn.Module, layer: str, activation, image, target: int, gammas):
    """Fig. 7C: the largest of ``gammas`` (the least injected) at which ``model`` calls ``image``
    ``target`` with ``activation`` injected at ``layer``; None where none does or the activation is
    not finite (no noise image of that class)."""
    a = torch.as_tensor(activation)
    if not torch.isfinite(a).all():
        return None
    for g in sorted(gammas, reverse=True):
        if injected_class(model, layer, a, image, g) == target:
            return float(g)
    return None


def injected_class(model: torch.nn.Module, layer: str, activation, image, gamma: float):
    """The class ``model`` gives ``image`` (one image, ``(1, *shape)``) with ``activation``
    injected at ``layer`` and ``gamma``; None if the activation is not finite."""
    a = torch.as_tensor(activation)
    if not torch.isfinite(a).all():
        return None
    with torch.inference_mode(), inject(model, layer, a, float(gamma)):
        return int(model(image).argmax(1))


def flip_panels(model: torch.nn.Module, means: dict, image, target: int, flips: dict, classes):
    """Fig. 7C's panels and titles: ``image`` (one image ``(1, 3, H, W)``), the mean noise image of
    ``target`` (``means["input"][target]``), the image mixed with it at the input, and the image
    again (its ``"conv3"`` activation is the one injected), each at the γ of ``flips``
    (``{layer: γ or None}``; 0.5 where None) with the class ``model`` then gives it."""
    def said(layer, g):
        c = injected_class(model, layer, means[layer][target], image, g)
        return "no activation" if c is None else classes[c]

    shown = {la: 0.5 if g is None else g for la, g in flips.items()}
    mean, x, g = means[INPUT][target].float(), image[0], shown[INPUT]
    mixed = x if not torch.isfinite(mean).all() else mix(x, mean, g)  # Eq. 3, the mean noise as the noise
    titles = [f"{said(INPUT, 1.0)}", f"mean noise: {classes[target]}", f"input, γ = {g:g}:\n{said(INPUT, g)}",
              f"conv3 (conv6), γ = {shown['conv3']:g}:\n{said('conv3', shown['conv3'])}"]
    return torch.stack([x, mean, mixed, x]), titles


def _yes(ok: bool, measured: bool = True) -> str:
    return "not measured" if not measured else ("yes" if ok else "no")


def claims(tops: dict, table: pd.DataFrame, summary: dict, easy, hard: int, flipped: bool) -> dict:
    """The paper's claims, ``"yes"``, ``"no"`` or ``"not measured"``: the fc layer leads
    :func:`top_layers`' ``most_alike``, ``dist_top_noise`` and ``dist_top_real``; the ``easy``
    classes (cat, bird) measured are all in the easier half of :func:`class_ease`'s ranks and the
    ``hard`` one (horse) in the harder half; more than one strongest layer; Fig. 7C's flip."""
    n = int(table["measured"].sum())
    easy = [c for c in easy if table.at[c, "measured"]]
    hard_ok = bool(table.at[hard, "measured"])
    return {"most_alike": _yes(tops["most_alike"] == "fc"),
            "dist_noise": _yes(tops["dist_top_noise"] == "fc"),
            "dist_real": _yes(tops["dist_top_real"] == "fc"),
            "easy": _yes(all(table.at[c, "rank"] - 1 < n / 2 for c in easy), bool(easy)),
            "horse": _yes(hard_ok and table.at[hard, "rank"] - 1 >= n / 2, hard_ok),
            "layers": _yes(summary["n_strongest_layers"] > 1),
            "frog": _yes(flipped)}
