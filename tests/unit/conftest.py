"""Hypothesis profiles: CI runs are deterministic and never replay a local example database.

Under CI (``CI`` set, as ``.ci/run`` does) examples are derived from each test alone
(``derandomize``) and no database is read or written, so a run fails or passes the same
way every time; locally Hypothesis keeps exploring and remembers what it found.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile("ci" if os.environ.get("CI") else "dev")
