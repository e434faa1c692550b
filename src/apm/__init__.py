"""apm: a self-hosted backend for API request analytics."""

__version__ = "0.1.0"
