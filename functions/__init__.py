"""Thin functions-framework entry points, one module per Workbench function."""
