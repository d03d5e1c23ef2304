"""Harness classes registered as Hydra plugins without installing anything into site-packages.

Hydra 1.3 instantiates a launcher or sweeper only from a class registered under the ``hydra_plugins``
package (hydra/core/plugins.py, ``is_in_toplevel_plugins_module``): a ``_target_`` anywhere else is refused
with "Invalid plugin ... not the hydra_plugins package". ``register_plugin`` makes a module of that package
at run time holding a subclass that only carries the accepted name; the behaviour stays the harness class's.
"""

from __future__ import annotations

import sys
import types


def register_plugin(module_name: str, cls: type, what: str) -> type:
    """Register cls with Hydra as ``<module_name>.<cls.__name__>`` (module_name under ``hydra_plugins``;
    what describes it in the made module's docstring) and return the registered subclass. Idempotent: the
    module and its subclass are made once per process."""
    from hydra.core.plugins import Plugins

    module = sys.modules.get(module_name)
    if module is None:
        module = types.ModuleType(module_name, f"{what} under Hydra's plugin package")
        setattr(module, cls.__name__, type(cls.__name__, (cls,), {"__module__": module_name}))
        sys.modules[module_name] = module
    registered = getattr(module, cls.__name__)
    Plugins.instance().register(registered)  # the first instance() scans the plugins
    return registered
