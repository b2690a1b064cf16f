"""stellarnn.spectra"""
