"""engage: a planning layer for advisors on top of their work calendar."""

__version__ = "0.1.0"
