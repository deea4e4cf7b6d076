"""Survey estimator: patients per treatment in the physician population.

``estimator.model.estimate`` is the pure estimation (DataFrames in, DataFrame out);
``estimator.run.run`` reads the files, calls it and writes ``estimates.csv`` and
``diagnostics.json``; ``estimator.cli`` is the command line (``python -m estimator`` or
``estimator``).
"""

# Kept free of imports: the command line settles BLAS threads before numpy loads.

__version__ = "1.0.0"
DEFAULT_BOOTSTRAP = 200
DEFAULT_SEED = 20261122
