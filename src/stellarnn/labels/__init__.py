"""stellarnn.labels

The Cannon (Ness et al. 2015), the networks' classic data-driven peer in the benchmark: :mod:`stellarnn.labels.cannon`.
"""
