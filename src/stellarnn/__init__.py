"""stellarnn: neural-network stellar and solar spectroscopy.

The version below is the package's single source of version (``pyproject.toml`` reads it); every
user-visible change bumps it with an entry in ``CHANGELOG.md``, and checkpoints record it.
"""
__version__ = "0.6.2"


def __getattr__(name):
    """The public API, imported on first use (``import stellarnn`` stays light)."""
    if name == "predict_labels":
        from .labels.predict import predict_labels

        return predict_labels
    if name == "atmosphere":
        from .atmospheres.api import atmosphere

        return atmosphere
    if name in ("blase", "stokes"):  # stellarnn.blase.clone/transfer, stellarnn.stokes.invert
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'stellarnn' has no attribute {name!r}")
