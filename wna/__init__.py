"""White Noise Analysis of Neural Networks (Borji & Lin, ICLR 2020), reproduced.

Modules, one per idea of the paper: :mod:`wna.data`, :mod:`wna.models`,
:mod:`wna.zoo`, :mod:`wna.stimuli`, the engine :class:`wna.Probe`
(:mod:`wna.engine`), :mod:`wna.probe` (classification images),
:mod:`wna.binary` (binary observers, Eqs. 1-3), :mod:`wna.sta`
(spike-triggered analysis of single units), :mod:`wna.templates` (template
matching), :mod:`wna.plots`, :mod:`wna.paper`, :mod:`wna.run` (the notebook
runner) and :mod:`wna.cli` (the ``wna`` command).
"""

__version__ = "0.1.0"

from . import binary, data, engine, models, probe, sta, stimuli, templates, zoo  # noqa: E402,F401
from .engine import Estimator, Probe, Result  # noqa: E402,F401

__all__ = ["Probe", "Estimator", "Result", "binary", "data", "engine", "models", "probe", "sta", "stimuli",
           "templates", "zoo", "__version__"]
