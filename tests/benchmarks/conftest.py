"""Make the checkout's ``benchmarks`` package importable: it is not installed with autotimm,
and plain ``pytest`` (unlike ``python -m pytest``) does not put the checkout on ``sys.path``."""

from __future__ import annotations

import sys

from helpers import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
