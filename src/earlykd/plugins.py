"""Registries fill themselves on import: every module of their package, then the modules that installed
packages name under the registry's entry-point group, e.g. in a plugin's pyproject.toml

    [project.entry-points."earlykd.methods"]
    my_method = "my_package.my_method"

Importing a named module registers what it decorates (`@register`, `@register_arch`, `register_source`)."""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from .errors import EarlykdError

GROUPS = {"methods": "earlykd.methods", "policies": "earlykd.policies", "architectures": "earlykd.architectures",
          "data_sources": "earlykd.data_sources"}


def load_plugins(group: str) -> None:
    """Import every entry point of `group`; one that fails is named in one line (its package, its error)."""
    for point in entry_points(group=group):
        try:
            point.load()
        except EarlykdError as exc:
            raise EarlykdError(f"plugin '{point.name}' ({point.value}, entry point group {group}): {exc}") from None
        except Exception as exc:  # a third-party import: any error, named in one line
            raise EarlykdError(f"plugin '{point.name}' ({point.value}, entry point group {group}) failed to load: "
                               f"{type(exc).__name__}: {exc}") from None


def fill_registry(package: str, path, group: str, skip: tuple[str, ...] = ("base",)) -> None:
    """Import the package's modules (all but `skip`), then the group's plugins."""
    for module in pkgutil.iter_modules(path):
        if module.name not in skip:
            importlib.import_module(f"{package}.{module.name}")
    load_plugins(group)
