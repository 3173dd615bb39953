"""pywharf: a private Python package index in one file."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "1.0.0.dev0"
