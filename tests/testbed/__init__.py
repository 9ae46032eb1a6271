"""The real testbed for integration tests: dockerd, a local registry, test images built from busybox-static.

Registered by `tests/conftest.py` (`pytest_plugins = ["testbed.docker"]`), so any
test can ask for the session fixtures `docker_daemon`, `registry`, `game_image`
and `docker_client`. A missing tool skips the test with the reason, or fails it
when `GAMENODE_REQUIRE_TESTBED=1` (CI).
"""
