"""stellarnn.numerics — shared low-level numerics (imports nothing else from stellarnn).

* ``faddeeva``: the Faddeeva function w(z) in torch, for the Voigt and Faraday-Voigt profiles of
  blasé and the Stokes inversions;
* ``levenberg_marquardt``: one batched, bounded Levenberg-Marquardt step on tensors, for the
  spectrum fitter and the Milne-Eddington inversion.
"""
