"""Shared by every test: the real testbed's session fixtures (see `tests/testbed/`), and Hypothesis's profile.

Under CI (`CI=true`) property tests are derandomized: the same examples every
run, so a run's verdict does not depend on luck. Elsewhere they explore new
examples each time (and keep failures in `.hypothesis/`), which is where new
bugs are found.
"""

import os

from hypothesis import settings

pytest_plugins = ["testbed.docker", "testbed.sshd"]

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
