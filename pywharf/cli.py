"""Placeholder replaced below."""
from __future__ import annotations


def main() -> None:
    print("pywharf")
