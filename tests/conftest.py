"""Settings shared by every test."""

from hypothesis import settings

# CI runs beside four database servers on two cores: a slow example is load, not a bug.
settings.register_profile("project", deadline=None, print_blob=True)
settings.load_profile("project")
