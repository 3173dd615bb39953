"""Our REST clients over urllib3: the only package that imports it."""

from __future__ import annotations
