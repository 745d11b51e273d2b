"""`python -m app` runs the same command line as `tramontane`."""

from app.ui.cli import main

raise SystemExit(main())
