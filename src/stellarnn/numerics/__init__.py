"""stellarnn.numerics — shared low-level numerics (imports nothing else from stellarnn).

Modules
-------
faddeeva              Faddeeva function w(z) in torch: Voigt and Faraday-Voigt profiles (blasé, Stokes)
levenberg_marquardt   one batched, bounded Levenberg-Marquardt step on tensors (the spectrum fitter,
                      the Milne-Eddington inversion)
"""
