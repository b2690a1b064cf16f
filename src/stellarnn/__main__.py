"""``python -m stellarnn ...`` runs the command line (the same as the ``stellarnn`` script)."""
import sys

from .cli import main

sys.exit(main())
