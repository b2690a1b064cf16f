"""stellarnn.stokes"""
