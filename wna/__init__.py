"""White Noise Analysis of Neural Networks (Borji & Lin, ICLR 2020), reproduced.

Modules, one per idea of the paper, from the bottom up:

- :mod:`wna.paths` (data root, cache folder), :mod:`wna.data` (the data sets),
  :mod:`wna.models` (the architectures), :mod:`wna.training` (one training
  loop) and :mod:`wna.zoo` (trained models on demand);
- :mod:`wna.stimuli` (noise and finite data sets), the engine
  :class:`wna.Probe` (:mod:`wna.engine`) and :mod:`wna.sweep` (grids of
  conditions through one probe);
- the estimates: :mod:`wna.probe` (classification images), :mod:`wna.significance`
  (which maps are more than noise), :mod:`wna.binary`
  (binary observers, Eqs. 1-3), :mod:`wna.sta` (spike-triggered analysis of
  single units), :mod:`wna.templates` (template matching),
  :mod:`wna.stimulation` (micro-stimulation), :mod:`wna.attack` (bias-map
  attacks), :mod:`wna.backdoor` (patch backdoors) and :mod:`wna.activations`
  (mean layer activations, activation injection);
- their analysis as tables for the book: :mod:`wna.shifts` (Fig. 9),
  :mod:`wna.attack_tables` (Fig. 6, Table 2), :mod:`wna.backdoor_tables`
  (Fig. 7), :mod:`wna.injection_tables` (Figs. 20, 21) and :mod:`wna.tables`
  (one rule that names a table's cells for the glue);
- :mod:`wna.plots`, :mod:`wna.paper` (the paper's printed numbers),
  :mod:`wna.run` (the notebook runner) and :mod:`wna.cli` (the ``wna`` command).
"""

__version__ = "0.1.0"

from . import binary, data, engine, models, probe, sta, stimuli, templates, zoo  # noqa: E402,F401
from .engine import Estimator, Probe, Result  # noqa: E402,F401

__all__ = ["Probe", "Estimator", "Result", "binary", "data", "engine", "models", "probe", "sta", "stimuli",
           "templates", "zoo", "__version__"]
