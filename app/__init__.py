"""Tramontane: offline chat and code completion with local models."""

__version__ = "0.1.0"
