"""Tables of the patch backdoors (Section 3.2, Figs. 7A, 7B, 7D, 18, 19): the numbers the book quotes.

:func:`poison_table` counts the poisoned training images (Fig. 19), :func:`accuracy_table` and
:func:`success_table` say how the attacked models behave (Fig. 7A, Fig. 18), :func:`score_table`
turns "the map reveals the patch" into numbers (energy on the patch, patch z, the blind detector of
:func:`wna.backdoor.detect`) and :func:`gradient_energy` does the same for the average gradients
(Fig. 7D). Every table has one row per item, indexed by its key; :func:`wna.tables.glue_items` names the
cells the book glues by one rule (here ``"{stem}_{key}"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import torch

from .backdoor import Attack, Patch, detect, patch_energy, poison, success

__all__ = ["model_key", "poison_table", "accuracy_table", "success_table", "scores", "score_table",
           "gradient_energy"]


def model_key(name: str) -> str:
    """A model's name as a key: the arrow spelt out (``"8→9"`` gives ``"8to9"``)."""
    return str(name).replace("→", "to")


def poison_table(images: torch.Tensor, labels: torch.Tensor, attacks: Mapping[str, Attack]) -> pd.DataFrame:
    """The poisoned training sets (Fig. 19): one row per attack, indexed ``f"{source}{target}"``.

    Columns: ``attack`` (its name), ``source``, ``target``, ``n source`` (images of the source
    class), ``poisoned`` (patched and relabelled by :func:`~wna.backdoor.poison`) and ``covered``
    (poisoned images with a non-zero pixel of the clean image under the patch, in any channel:
    where the authors' uint8 patch wrapped around).
    """
    rows = []
    for name, a in attacks.items():
        changed = poison(images, labels, a.patch, a.source, a.target, a.fraction)[2]
        under = images[changed][:, :, a.patch.mask]  # (n, ch, patch pixels)
        rows.append({"key": f"{a.source}{a.target}", "attack": name, "source": a.source, "target": a.target,
                     "n source": int((torch.as_tensor(labels) == a.source).sum()),
                     "poisoned": len(changed), "covered": int((under > 0).flatten(1).any(1).sum())})
    return pd.DataFrame(rows).set_index("key")


def accuracy_table(models: Mapping[str, object]) -> pd.DataFrame:
    """Each model's clean test accuracy (its ``test_accuracy``, in %), indexed by :func:`model_key`."""
    return pd.DataFrame([{"key": model_key(n), "model": n, "test accuracy (%)": 100 * float(m.test_accuracy)}
                         for n, m in models.items()]).set_index("key")


def success_table(models: Mapping[str, object], images: torch.Tensor, labels: torch.Tensor,
                  attacks: Mapping[str, Attack]) -> pd.DataFrame:
    """The attacks' success (Fig. 7A, Fig. 18): every source image of the test set patched.

    ``attacks[name]`` is the attack to test model ``models[name]`` with. One row per model, indexed
    by :func:`model_key`: ``model``, ``test accuracy (%)`` (its ``test_accuracy``, clean test set),
    ``source``, ``target``, ``pair`` (``f"{source}{target}"``), ``n source`` (test images of the
    source class) and ``success (%)``, the share of them, patched, that the model classifies as the
    target.
    """
    labels = torch.as_tensor(labels)
    rows = []
    for name, m in models.items():
        a = attacks[name]
        patched = poison(images, labels, a.patch, a.source, a.target, 1.0)[0]
        src = labels == a.source
        rows.append({"key": model_key(name), "model": name, "test accuracy (%)": 100 * float(m.test_accuracy),
                     "source": a.source, "target": a.target,
                     "pair": f"{a.source}{a.target}", "n source": int(src.sum()),
                     "success (%)": 100 * success(m, patched[src], a.target)})
    return pd.DataFrame(rows).set_index("key")


def scores(model: str, maps, attack: Attack, k: int = 5) -> dict:
    """One row of :func:`score_table`: how ``model``'s class maps ``maps`` show ``attack``'s patch.

    ``noise to target (%)``: the share of the stimuli the target class received; ``energy ratio,
    target`` and ``energy ratio, other classes (max)``: :func:`~wna.backdoor.patch_energy`'s ratio
    for the target and the largest over the other classes (NaN where none); ``patch z, target``,
    ``patch z flags`` (the class with the largest patch z, -1 where none has one) and ``its patch
    z``; ``detector flags``, ``z``, ``window (rows, cols)`` and ``on patch`` ("yes"/"no"): the blind
    detector :func:`~wna.backdoor.detect` with a ``k×k`` window.
    """
    energy = patch_energy(maps, attack.patch)
    e, z = energy["ratio"], energy["z"]
    top = int(z.nan_to_num(-float("inf")).argmax()) if (~z.isnan()).any() else -1
    d = detect(maps, k=k)
    others = e[(torch.arange(len(e)) != attack.target) & ~e.isnan()]
    return {"key": f"{model_key(model)}_{attack.patch.name}", "model": model, "patch": attack.patch.name,
            "target": attack.target,
            "noise to target (%)": 100 * float(maps.frequency[attack.target]),
            "energy ratio, target": float(e[attack.target]),
            "energy ratio, other classes (max)": float(others.max()) if len(others) else float("nan"),
            "patch z, target": float(z[attack.target]),
            "patch z flags": top, "its patch z": float(z[top]) if top >= 0 else float("nan"),
            "detector flags": d.flagged, "z": d.flagged_z,
            "window (rows, cols)": d.window() if d.flagged >= 0 else "–",
            "on patch": "yes" if d.on_patch(attack.patch) else "no"}


def score_table(entries: Iterable[tuple[str, object, Attack]], k: int = 5) -> pd.DataFrame:
    """:func:`scores` of each ``(model name, maps, attack)``, one row each, indexed
    ``f"{model_key(model)}_{patch name}"``."""
    return pd.DataFrame([scores(name, maps, a, k=k) for name, maps, a in entries]).set_index("key")


def gradient_energy(gradients: Mapping[str, torch.Tensor], patch: Patch,
                    classes: Iterable[int] = (8, 9)) -> pd.DataFrame:
    """The energy ratio on ``patch`` of average-gradient maps (Fig. 7D), per map and class.

    ``gradients[key]``: per-class maps ``(C, [ch,] H, W)`` (:func:`~wna.backdoor.average_gradient`);
    the ratio is :func:`~wna.backdoor.patch_energy`'s (the gradient itself squared). One row per
    key, one column ``energy{c}`` per class ``c`` of ``classes``.
    """
    classes = list(classes)
    rows = []
    for key, g in gradients.items():
        ratio = patch_energy(g, patch)["ratio"]
        rows.append({"key": key, **{f"energy{c}": float(ratio[c]) for c in classes}})
    return pd.DataFrame(rows).set_index("key")
