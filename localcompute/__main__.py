"""`python -m localcompute` is the `localcompute` command."""

from __future__ import annotations

import sys

from localcompute.cli import main

sys.exit(main())
