"""``python -m hamq`` is the same as the ``hamq`` command."""

import sys

from hamq.cli import main

sys.exit(main())
