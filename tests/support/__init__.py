"""Test support that is not a test: servers and helpers shared by the suites."""
