"""The darlkit version string (PEP 440)."""

__version__ = "0.1.0"
