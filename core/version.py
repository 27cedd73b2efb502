"""The version the app, the reports and the packaged build state (kept equal to pyproject.toml by a test)."""

__version__ = "0.1.0"
