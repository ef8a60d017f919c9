"""``python -m dualsr`` (also what ``torchrun -m dualsr`` runs)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
