"""The numbers the paper prints, for the reproduction report.

Percentages as printed by Borji & Lin (2020); the source of each is named.
"""

PAPER = {
    # §3.1 and Fig. 2
    "cnn_acc": 99.2,  # MNIST CNN test accuracy, §3.1
    "logreg_acc": 92.46,  # logistic regression test accuracy, Fig. 2B caption
    "tm_cnn_maps": 25.8,  # Fig. 2C, template matching with CNN bias maps
    "tm_logreg_maps": 47.6,  # Fig. 2C, with logistic-regression bias maps
    "tm_mean_digits": 63.1,  # Fig. 2C, with mean digit images
    "tm_logreg_weights": 83.77,  # Fig. 2C, with logistic-regression weights
    "cnn_top_class": 8,  # §3.1: "most of the noise patterns are classified as 8"
    # Fig. 13 (supplement): test accuracies of the authors' released code (NOTES.md),
    # and "no noise image is classified as 1" by either model.
    "mlp_acc": 98.3,
    "rnn_acc": 96.4,
    "mlp_count_1": 0,
    "rnn_count_1": 0,
}


def difference(key: str, ours: float) -> float:
    """``ours - paper`` for a numeric entry, rounded to 2 decimals."""
    return round(float(ours) - float(PAPER[key]), 2)
