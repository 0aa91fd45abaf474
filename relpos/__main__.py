"""``python -m relpos`` (e.g. under ``torchrun -m relpos pretrain ...``)."""

import sys

from relpos.cli import main

if __name__ == "__main__":
    sys.exit(main())
