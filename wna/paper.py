"""The numbers the paper prints, and one helper to show ours beside them.

Percentages as printed by Borji & Lin (2020); the source of each is named in
:data:`ABOUT`. The notebooks call :func:`compare` (one number) and
:func:`compare_range` (one number per training seed): each glues ours, the
difference and the paper's value for the reproduction report, which never
types a paper number itself.
"""

from __future__ import annotations

PAPER = {
    # §3.1 and Fig. 2
    "cnn_acc": 99.2,  # MNIST CNN test accuracy, §3.1
    "logreg_acc": 92.46,  # logistic regression test accuracy, Fig. 2B caption
    "tm_cnn_maps": 25.8,  # Fig. 2C, template matching with CNN bias maps
    "tm_logreg_maps": 47.6,  # Fig. 2C, with logistic-regression bias maps
    "tm_mean_digits": 63.1,  # Fig. 2C, with mean digit images (the dot rule gives 63.10 exactly)
    "tm_logreg_weights": 83.77,  # Fig. 2C, with logistic-regression weights
    "cnn_top_class": 8,  # §3.1: "most of the noise patterns are classified as 8"
    # §3.1 and Fig. 3 (CIFAR-10): template matching with the CNN's bias maps (rule not known) and
    # with the mean training images (the released code's rule: cosine with the per-class RMS
    # images, book/methods.md); the CIFAR-10 CNN of Fig. 11 (authors' code: 82%; training code not released)
    "cifar_cnn_acc": 82.0,
    "cifar_tm_maps": 23.71,
    "cifar_tm_means": 28.69,
    # Fig. 13 (supplement): test accuracies of the authors' released code (book/methods.md),
    # and "no noise image is classified as 1" by either model.
    "mlp_acc": 98.3,
    "rnn_acc": 96.4,
    "mlp_count_1": 0,
    "rnn_count_1": 0,
    # Fig. 4 and 14: "with 10K noise stimuli, the bias maps already start to look like the target digits"
    "fig4_samples": 10_000,
    # Fig. 5: template matching with Gabor-noise maps (the released code's rule: cosine on RMS maps;
    # Fashion-MNIST measured on the training set), and the PCA variance kept (Appendix)
    "gabor_tm_mnist": 35.5,
    "gabor_tm_fashion_mnist": 41.21,
    "gabor_tm_cifar10": 21.67,
    "gabor_var_mnist": 96.1,
    "gabor_var_cifar10": 97.5,  # per channel 97.57 / 97.51 / 97.52
    # Fig. 15: "the classification images can be computed with much less number of stimuli (~100)"
    "fig15_samples": 100,
    # Fig. 16: the Fashion-MNIST CNN (authors' code: about 85-87%) and where noise goes
    "fashion_cnn_acc": 86.0,
    "fashion_white_top_class": 8,
    "fashion_gabor_top_class": 8,
    # Table 1 (ImageNet): its best row, ResNet152 (10^6 Gabor-PCA noise images, 50,000 validation images)
    "imagenet_tm_acc": 0.18,
    "imagenet_empty": 564,
    # §3.4, Figs. 9 and 24: raising (lowering) the fc biases shifts the psychometric curve to the
    # left (right) "for all digits": 10 of the 10 digits
    "fc_left_digits": 10,
    "fc_right_digits": 10,
    # §3.2 and Table 2: the bias-map attack's fooling rate (fraction classified as the pattern's
    # class, averaged over the 10 classes): digits + bias at γ = 0.8, noise + bias at γ = 0.5
    "attack_digits_bias_08": 21.4,
    "attack_noise_bias_05": 20.7,
    # §3.2, Fig. 7A: the 8→9 backdoor sent every patched test 8 to 9 (974 of 974 in the authors'
    # notebook; the paper: "they completely misclassify the perturbed digits")
    "backdoor_8to9_patched": 100.0,
}

# Fig. 16's printed counts: 10^6 Gabor-noise images and 10^7 white-noise images per Fashion-MNIST class
FIG16_COUNTS = {
    "gabor": [38344, 31501, 216121, 10604, 21653, 3, 183858, 203, 484047, 13666],
    "white": [4560, 935, 13249, 16, 11, 11, 454083, 0, 9531116, 19],
}

# Table 1 as printed: backbone -> (template accuracy as a fraction, runtime m:ss on one GPU, empty classes)
TABLE1 = {
    "resnet152": (0.00180, "2:15", 564),
    "resnet101": (0.00152, "1:36", 539),
    "densenet201": (0.00118, "2:12", 998),
    "squeezenet1_1": (0.00104, "0:13", 999),
    "googlenet": (0.00102, "0:26", 999),
    "mnasnet1_3": (0.00082, "0:32", 922),
    "vgg19_bn": (0.00074, "1:51", 994),
}

# Table 2 (Fig. 6C): the fooling rate (fraction) at γ = 0, 0.1, ..., 1 for the four sweeps
# (1 - γ) x + γ p, x noise or test digits ("signal"), p a class's bias map or mean digit.
TABLE2_GAMMAS = tuple(round(0.1 * i, 1) for i in range(11))
TABLE2 = {
    ("noise", "bias"): (0.1, 0.113, 0.127, 0.149, 0.174, 0.207, 0.271, 0.429, 0.666, 0.743, 0.9),
    ("digits", "bias"): (0.1, 0.1, 0.1, 0.1, 0.101, 0.102, 0.105, 0.123, 0.214, 0.587, 0.9),
    ("noise", "mean"): (0.1, 0.127, 0.179, 0.313, 0.618, 0.842, 0.986, 1.0, 1.0, 1.0, 1.0),
    ("digits", "mean"): (0.1, 0.101, 0.103, 0.109, 0.149, 0.28, 0.534, 0.83, 0.994, 1.0, 1.0),
}


def table2_key(base: str, pattern: str, gamma: float) -> str:
    """The name of one Table 2 cell, e.g. ``t2_noise_bias_g05`` (its paper value: ``paper_`` + it)."""
    return f"t2_{base}_{pattern}_g{round(10 * gamma):02d}"


# every Table 2 cell by name: the report compares them one by one
TABLE2_CELLS = {table2_key(b, p, g): v for (b, p), row in TABLE2.items()
                for g, v in zip(TABLE2_GAMMAS, row)}

# key: (what it is, kind, where the paper prints it); kind is "percent", "count" or "class"
ABOUT = {
    "cnn_acc": ("CNN test accuracy", "percent", "§3.1"),
    "logreg_acc": ("logistic regression test accuracy", "percent", "Fig. 2B caption"),
    "tm_cnn_maps": ("template matching, CNN bias maps", "percent", "Fig. 2C"),
    "tm_logreg_maps": ("template matching, LR bias maps", "percent", "Fig. 2C"),
    "tm_mean_digits": ("template matching, mean digits", "percent", "Fig. 2C"),
    "tm_logreg_weights": ("template matching, LR weights", "percent", "Fig. 2C"),
    "cnn_top_class": ("class most noise images go to (CNN)", "class", "§3.1"),
    "cifar_cnn_acc": ("CIFAR-10 CNN test accuracy (authors' code: 82%)", "percent", "authors' code (Fig. 11)"),
    "cifar_tm_maps": ("template matching, CIFAR-10 bias maps", "percent", "§3.1, Fig. 3"),
    "cifar_tm_means": ("template matching, CIFAR-10 mean images", "percent", "§3.1, Fig. 3"),
    "mlp_acc": ("MLP test accuracy", "percent", "authors' code (Fig. 13)"),
    "rnn_acc": ("RNN test accuracy", "percent", "authors' code (Fig. 13)"),
    "mlp_count_1": ("noise images classified as 1, MLP", "count", "Fig. 13"),
    "rnn_count_1": ("noise images classified as 1, RNN", "count", "Fig. 13"),
    "fig4_samples": ("noise images after which the CNN's maps resemble digits", "count", "§3.1, Figs. 4, 14"),
    "gabor_tm_mnist": ("template matching, Gabor-noise maps, MNIST", "percent", "Fig. 5"),
    "gabor_tm_fashion_mnist": ("template matching, Gabor-noise maps, Fashion-MNIST", "percent", "Fig. 5"),
    "gabor_tm_cifar10": ("template matching, Gabor-noise maps, CIFAR-10", "percent", "Fig. 5"),
    "gabor_var_mnist": ("PCA variance kept, MNIST, 250 components", "percent", "§3.1, Appendix"),
    "gabor_var_cifar10": ("PCA variance kept, CIFAR-10, 600 components per channel", "percent", "§3.1, Appendix"),
    "fig15_samples": ("decoder-noise images after which the maps resemble digits", "count", "§3.1, Fig. 15"),
    "fashion_cnn_acc": ("Fashion-MNIST CNN test accuracy (authors' code: about 85-87%)", "percent",
                        "authors' code (Fig. 16)"),
    "fashion_white_top_class": ("class most white-noise images go to (Fashion CNN)", "class", "Fig. 16"),
    "fashion_gabor_top_class": ("class most Gabor-noise images go to (Fashion CNN)", "class", "Fig. 16"),
    "imagenet_tm_acc": ("ImageNet template matching, best backbone (paper: ResNet152)", "percent", "Table 1"),
    "imagenet_empty": ("classes no noise image reached, that backbone (paper: ResNet152)", "count", "Table 1"),
    "fc_left_digits": ("digits whose curve raising the fc biases shifts left", "count", "§3.4, Fig. 9"),
    "fc_right_digits": ("digits whose curve lowering the fc biases shifts right", "count", "§3.4, Fig. 24"),
    "attack_digits_bias_08": ("fooling rate, test digits + bias maps at γ = 0.8", "percent",
                              "§3.2 (21%), Table 2 (0.214)"),
    "attack_noise_bias_05": ("fooling rate, white noise + bias maps at γ = 0.5", "percent", "§3.2, Table 2"),
    "backdoor_8to9_patched": ("patched test 8s classified as 9 by the 8→9 backdoored CNN", "percent",
                              "authors' notebook (book/methods.md)"),
}


def difference(key: str, ours: float) -> float:
    """``ours - paper`` for a numeric entry, rounded to 2 decimals."""
    return round(float(ours) - float(PAPER[key]), 2)


def _glue(name, value) -> None:
    from myst_nb import glue  # only the notebooks need myst_nb

    glue(name, value, display=False)


def _ours(key: str, ours):
    """Ours as a plain Python number: a percentage rounded to 2 decimals, else an int."""
    if ABOUT[key][1] == "percent":
        return round(float(ours), 2)
    return int(ours)


def _show(key: str, value) -> str:
    return f"{value:.2f}%" if ABOUT[key][1] == "percent" else f"{value:,}"


def _paper(key: str) -> str:
    return f"{PAPER[key]:g}%" if ABOUT[key][1] == "percent" else f"{PAPER[key]:,}"


def compare(key: str, ours, name: str | None = None, *, glue: bool = True) -> str:
    """Ours beside the paper's value of ``key``: glue both, return one readable line.

    ``ours`` is in the paper's unit (percentages as percent, not fractions).
    Glues (``display=False``, plain Python types): ``key`` (ours, rounded to
    2 decimals, or an int for a count or a class), ``paper_<key>`` (the
    paper's value) and ``<key>_diff`` (ours minus the paper's) or, for a class
    label, ``<key>_matches`` ("yes" or "no"). Returns the line, e.g.
    ``CNN test accuracy: 99.19% (paper 99.2%, -0.01)``; ``name`` replaces the
    description from :data:`ABOUT`. ``glue=False`` only formats the line.
    """
    _check(key)
    value = _ours(key, ours)
    if ABOUT[key][1] == "class":
        same = "yes" if value == PAPER[key] else "no"
        extra, tail = {f"{key}_matches": same}, "the same" if same == "yes" else "differs"
    else:
        diff = difference(key, value)
        if ABOUT[key][1] == "percent":
            tail = f"{diff:+.2f}"
        else:
            diff = int(diff)
            tail = f"{diff:+,}"
        extra = {f"{key}_diff": diff}
    if glue:
        _glue(key, value)
        _glue(f"paper_{key}", PAPER[key])
        for k, v in extra.items():
            _glue(k, v)
    return f"{name or ABOUT[key][0]}: {_show(key, value)} (paper {_paper(key)}, {tail})"


def compare_range(key: str, values, name: str | None = None, *, prefix: str = "seeds",
                  runs: str = "runs", glue: bool = True) -> str:
    """Ours as a range over several runs (training seeds) beside the paper's single value.

    Glues ``<prefix>_<key>_min`` and ``<prefix>_<key>_max`` (plain Python
    numbers; ``paper_<key>`` is :func:`compare`'s: a notebook glues a key
    once); for a class label instead
    ``<prefix>_<key>_matches``, the number of runs that agree with the paper,
    and ``<prefix>_<key>_values``, the classes seen ("3, 8"). Returns one
    line, e.g. ``CNN test accuracy: 98.91–99.12% over 3 runs (paper 99.2%)``.
    """
    _check(key)
    values = [_ours(key, v) for v in values]
    if not values:
        raise ValueError("no values")
    out = {}
    if ABOUT[key][1] == "class":
        agree = sum(v == PAPER[key] for v in values)
        seen = ", ".join(str(v) for v in sorted(set(values)))
        out.update({f"{prefix}_{key}_matches": agree, f"{prefix}_{key}_values": seen})
        ours, tail = seen, f"; {agree} of {len(values)} agree"
    else:
        lo, hi = min(values), max(values)
        out.update({f"{prefix}_{key}_min": lo, f"{prefix}_{key}_max": hi})
        ours = _show(key, lo) if lo == hi else f"{_show(key, lo).rstrip('%')}–{_show(key, hi)}"
        tail = ""
    if glue:
        for k, v in out.items():
            _glue(k, v)
    return f"{name or ABOUT[key][0]}: {ours} over {len(values)} {runs} (paper {_paper(key)}{tail})"


def _check(key: str) -> None:
    if key not in PAPER:
        raise KeyError(f"{key!r} is not a paper number (known: {', '.join(PAPER)})")
