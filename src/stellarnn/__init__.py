"""stellarnn: neural-network stellar and solar spectroscopy."""
__version__ = "0.1.0"
