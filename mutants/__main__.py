"""``python -m mutants``: see :mod:`mutants._runner`."""

from ._runner import main

raise SystemExit(main())
