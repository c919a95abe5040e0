"""``python -m bulletproof_etl.cli``: the same as the ``bulletproof-etl`` command."""

import sys

from .main import main

sys.exit(main())
