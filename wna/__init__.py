"""White Noise Analysis of Neural Networks (Borji & Lin, ICLR 2020), reproduced.

Modules, one per idea of the paper: :mod:`wna.data`, :mod:`wna.models`,
:mod:`wna.zoo`, :mod:`wna.stimuli`, :mod:`wna.probe`, :mod:`wna.plots`,
:mod:`wna.run` (the notebook runner) and :mod:`wna.cli` (the ``wna`` command).
"""

__version__ = "0.1.0"

from . import data, models, probe, stimuli, zoo  # noqa: E402,F401

__all__ = ["data", "models", "probe", "stimuli", "zoo", "__version__"]
