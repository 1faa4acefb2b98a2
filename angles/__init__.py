"""Angles AI Universe: the shared package behind the operator scripts."""

__version__ = "1.0.0"
