"""stellarnn.stokes — solar Stokes inversion.

Modules
-------
zeeman              Landé factors, 3j symbols, Zeeman patterns; the Fe I 6301.5 / 6302.5 Å lines
milne_eddington     batched, differentiable Milne-Eddington synthesis at Hinode SP sampling
lm_inversion        classical multi-start Levenberg-Marquardt ME inversion
me_cnn              1D CNN from Stokes profiles to ME parameters with uncertainties
lightweaver_driver  depth-stratified profiles from Lightweaver polarised radiative transfer
stratified_cnn      1D CNN from Stokes profiles to T, v_LOS, B, χ stratifications (optionally bounded), OOD distance
node_inversion      classical node-based LTE inversion (SIR-style) with Lightweaver as the forward model
hinode_io           Hinode SP level-1 FITS reader/writer, Stokes cubes (floats or integer counts), parameter-map FITS
wavelength_grid     observed wavelength grids resampled to the networks' training grid
plotting            profile and map plots
inversion_api       ``invert(data, method="lm"|"cnn")``: files, SPMap or arrays -> QTable/maps with units
cli                 ``stellarnn stokes synth|invert|train|plot``
"""


def __getattr__(name):
    """``invert`` and ``StokesInversion`` (:mod:`.inversion_api`), imported on first use."""
    if name in ("invert", "StokesInversion"):
        from . import inversion_api

        return getattr(inversion_api, name)
    raise AttributeError(f"module 'stellarnn.stokes' has no attribute {name!r}")
