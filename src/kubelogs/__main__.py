"""`python -m kubelogs` runs the command line."""

from kubelogs.cli.main import main

raise SystemExit(main())
