"""Attack and defence with classification images (the paper's §3.2, Figs. 6, 7, 17-21, Table 2).

- Bias-map attack (Fig. 6, 17, Table 2): stimuli ``(1 - γ) x + γ p``, ``x``
  white noise or test images, ``p`` a class's bias map or mean image; the
  fooling rate is the fraction classified as ``p``'s class. Every γ runs
  through one :class:`wna.Probe` engine.
- Patch backdoors (Fig. 7A, 7B, 7D, 18, 19): poisoned training sets, the
  average input gradient, and a detector that finds the patched class in the
  classification images.
- Activation injection (Fig. 7C, 20, 21): mean layer activations of noise per
  predicted class, mixed into real images' activations by forward hooks that
  are always removed.
"""

from __future__ import annotations

from ._backdoor import (ATTACKS, PATCHES, Attack, Detection, Patch, apply_patch,  # noqa: F401
                        average_gradient, confusion, detect, load_poisoned, patch_energy, poison,
                        predictions, success)
from ._bias_attack import (SCALES, AttackResult, MixEstimator, bias_map_attack,  # noqa: F401
                           mixed_examples, plot_examples, plot_histograms, plot_rates,
                           scale_patterns)
from ._injection import *  # noqa: F401,F403 (activation injection: Figs. 7C, 20, 21)
from ._injection import __all__ as _injection_all

__all__ = ["SCALES", "scale_patterns", "MixEstimator", "AttackResult", "bias_map_attack",
           "mixed_examples", "plot_examples", "plot_histograms", "plot_rates",
           "ATTACKS", "PATCHES", "Attack", "Detection", "Patch", "apply_patch", "average_gradient",
           "confusion", "detect", "load_poisoned", "patch_energy", "poison", "predictions",
           "success", *_injection_all]
