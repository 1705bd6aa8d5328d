"""relift: post-training reasoning LLMs with RL and distillation on a Ray single controller.

The ``relift`` package is the library layer: importable with no Ray cluster and no GPU.
``workers`` (inside the Ray actors) and ``trainer`` (the drivers) build on it.
"""

__version__ = "0.1.0"
