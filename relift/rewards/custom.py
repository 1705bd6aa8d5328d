"""Custom reward functions loaded from a Python file (verl's ``custom_reward_function``).

``custom_reward_function.path`` names a ``.py`` file and ``.name`` a function in it with the
signature ``fn(data_source, solution_str, ground_truth, extra_info=None, **options)`` returning a
float or a dict with ``score``.  Given to :class:`relift.rewards.RewardPool` as
``custom_reward_fn=(path, name)`` it replaces every registered scorer; a function loaded here can
also be registered for chosen sources with ``register_reward(...)(fn)`` (it then has the
registry's signature, without ``data_source``).  Reward worker processes re-load the file by path.

Warm-up: a file may also define ``relift_warm_up()`` (no arguments). The reward pool calls it once,
in the process its workers are forked from, before the first worker starts: the place to import a
heavy library and build its caches, so that no worker pays for it inside a sample's deadline and
all workers share those pages (``relift/rewards/math_v3.py`` warms up math-verify this way). Modules
the function imports only when called are also carried over to later workers after a first one has
imported them (:mod:`relift.rewards.pool_worker`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import zlib
from collections.abc import Callable

__all__ = ["load_custom_reward_fn", "CUSTOM_MODULE_PREFIX", "WARM_UP_NAME"]

CUSTOM_MODULE_PREFIX = "relift_custom_reward_"  # sys.modules names of files loaded here
WARM_UP_NAME = "relift_warm_up"  # the optional warm-up function of a custom reward file


def _module_name(path: str) -> str:
    """The ``sys.modules`` name of the file at ``path``: the same in every process, 64 bits of two
    checksums of the path (not ``hashlib``: loading OpenSSL added ~4 MB to every reward process)."""
    data = os.fsencode(path)
    return f"{CUSTOM_MODULE_PREFIX}{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def load_custom_reward_fn(path: str | os.PathLike, name: str = "compute_score") -> Callable:
    """Load function ``name`` from the Python file at ``path`` (verl's custom_reward_function).

    The module is imported once per process under a name derived from the path, so loading the
    same file twice returns the same function.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"custom reward file not found: {path}")
    mod_name = _module_name(path)
    module = sys.modules.get(mod_name)
    if module is None or getattr(module, "__file__", None) != path:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import custom reward file {path} (is it a .py file?)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[mod_name]
            raise
    fn = getattr(module, name, None)
    if fn is None:
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise AttributeError(f"custom reward file {path} has no function {name!r}; "
                             f"its callables are: {', '.join(public) or '(none)'}")
    if not callable(fn):
        raise TypeError(f"{name!r} in custom reward file {path} is not callable")
    return fn
