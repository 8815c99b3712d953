"""Representation metrics, one module per family.

Import the module you need (``from reprobust.metrics import cka``); nothing is imported eagerly here so
that loading one metric never pulls in the dependencies of another.
"""
