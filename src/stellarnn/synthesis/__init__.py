"""Synthesis: line lists, the PySME driver, the APOGEE instrument, resumable spectrum grids."""
