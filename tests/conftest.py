"""Suite-wide settings: the `support` helpers on the path, and CI=true semantics.

Under CI=true a real server that cannot start fails the run; it is never skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
