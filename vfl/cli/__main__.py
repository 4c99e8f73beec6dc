"""``python -m vfl.cli``: the ``vfl`` command."""

import sys

from vfl.cli.main import main

sys.exit(main())
