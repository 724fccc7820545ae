"""``python -m autotimm`` is the ``autotimm`` console script."""

from autotimm.cli import main

raise SystemExit(main())
