"""``python -m msresnet1d``: the ``msresnet1d`` command (:func:`msresnet1d.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
