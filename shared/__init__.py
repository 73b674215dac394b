"""The library every Workbench function uses: models, settings, errors, auth, store, runtime, services."""

__version__ = "0.1.0"
