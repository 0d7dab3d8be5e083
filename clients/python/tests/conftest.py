"""Puts this folder on the path so the tests import `fake_master`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
