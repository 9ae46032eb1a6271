"""Shared by every test: the real testbed's session fixtures (see `tests/testbed/`)."""

pytest_plugins = ["testbed.docker", "testbed.sshd"]
