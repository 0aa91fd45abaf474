"""Synthetic PSG records in the PhysioNet/CinC 2018 format."""

from relpos.sleep.synthetic.generator import *  # noqa: F403
from relpos.sleep.synthetic.generator import __all__  # noqa: F401
