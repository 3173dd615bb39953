"""`python -m pywharf` and the zipapp entry point."""

from __future__ import annotations

from pywharf.cli import main

main()
