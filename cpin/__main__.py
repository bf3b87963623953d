"""`python -m cpin` is `cpin`."""

import sys

from cpin.cli import main

sys.exit(main())
