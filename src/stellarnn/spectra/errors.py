"""Errors raised by spectrum readers."""
from __future__ import annotations


class SpectrumFileError(ValueError):
    """A spectrum file that cannot be used: names the file and, where relevant, the HDU."""

    def __init__(self, path, message: str, hdu: int | str | None = None):
        where = f"{path}" + (f" [HDU {hdu}]" if hdu is not None else "")
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.hdu = hdu
