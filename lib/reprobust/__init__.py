"""reprobust — internal representations and adversarial robustness, five papers in one small library.

Modules are organised by concern (``data``, ``models``, ``train``, ``features``, ``attacks``,
``metrics``, ``cache``, ``stats``, ``claims``, ``plotting``, ``context``, ``run``); the notebooks in
``notebooks/`` tell each paper's story on top of them.
"""

__version__ = "0.1.0"
