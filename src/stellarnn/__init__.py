"""stellarnn: neural-network stellar and solar spectroscopy.

The version below is the package's single source of version (``pyproject.toml`` reads it); every
user-visible change bumps it with an entry in ``CHANGELOG.md``, and checkpoints record it.
"""
__version__ = "0.2.0"
