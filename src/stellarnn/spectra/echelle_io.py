"""Observed (échelle) spectra as instruments and archives write them: FITS tables and images, Spectrum1D.

One reader for every layer above: blasé fits what it returns (:mod:`stellarnn.blase.sources` adds data-layer
entries and ``.npz`` files), ``stellarnn spectra info`` summarises it, and the generic 1-D reader
(:mod:`stellarnn.spectra.generic_io`) shares its column spellings, units and media.  It reads a specutils
``Spectrum1D``-like object (:func:`from_spectrum1d`: anything with ``.spectral_axis`` and ``.flux`` astropy
quantities and an optional ``.uncertainty``/``.mask``) or a FITS file (:func:`read_echelle_fits`):

  - binary tables, one per order (the TelFit échelle layout: ``wavelength``, ``flux``, ``error``,
    ``continuum``), or one table whose columns are 2-D (one row per order), or a single 1-D
    spectrum table (specutils' ``tabular-fits``). Column names are matched case-insensitively:
    wavelength ``wavelength``/``wave``/``lambda``/``wl``/``lam`` (optionally with an ``_air``/``_vac``
    suffix), flux ``flux``/``spec``, uncertainty ``uncertainty``/``error``/``err``/``sigma``/
    ``flux_err``/``e_flux`` (1σ), ``ivar`` (inverse variance) or ``variance``/``var``;
    an optional ``continuum`` column divides flux and uncertainty; pixels with a non-zero quality flag
    (``QUAL``, as the ESO archive writes it: :data:`QUALITY_COLUMNS`) are masked.
  - a 1-D image (specutils' ``wcs1d-fits``) with a linear or log-linear (``DC-FLAG = 1``) wavelength WCS
    (CRVAL1, CDELT1 or CD1_1, CRPIX1, CUNIT1), an optional uncertainty image extension (EXTNAME
    ``UNCERTAINTY``/``ERROR``/``SIGMA``/``IVAR``).
  - an IRAF multispec or equispec image (``apall``/``dispcor`` échelle output: one order per line, optionally
    bands ``BANDIDn`` of which the "sigma" band is the uncertainty), wavelengths from its WAT keywords
    (:mod:`stellarnn.spectra.iraf_wcs`: linear, log-linear, Chebyshev, Legendre, spline and table dispersions).

  Wavelength units: the column's TUNIT (or CUNIT1, or an IRAF WAT1 ``units``) parsed with :mod:`astropy.units`
  (Angstrom, nm, µm/micron, m …; ``A`` and ``AA`` are read as Angstrom, not Ampere), else the unit its name states
  (``wave_ang``, ``wavelength_nm``, ``wave_um``: :func:`column_name_unit`). Without a unit the unit is the
  caller's ``wavelength_unit`` or, failing that, inferred from the values (median 0.1–30: µm;
  100–2999: nm — the TelFit layout; 3000–300 000: Angstrom) and the inference is recorded in
  ``metadata["wavelength_unit_source"]``; a mislabelled unit (Å stored with TUNIT ``nm``) cannot
  be detected and is honoured. Medium: ``AIRORVAC`` (``air``/``vac``), ``VACUUM`` (T/F), ``WAVEMED``
  or an ``_air``/``_vac`` column suffix; stated air wavelengths are converted to vacuum with
  :func:`stellarnn.spectra.air_vacuum.air_to_vacuum` (the project's VALD convention) unless the
  caller asks for ``medium="as-given"`` or ``"air"``. Non-finite pixels are kept but masked
  (:meth:`ObservedSpectrum.good_pixels`); pixels with a non-finite wavelength are dropped.
  Barycentric-correction keywords (:data:`BARYCENTRIC_KEYWORDS`) are reported in ``metadata``, not
  applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .air_vacuum import air_to_vacuum, vacuum_to_air

NM_TO_ANGSTROM = 10.0


@dataclass
class ObservedSpectrum:
    """Pixels of an observed (echelle) spectrum, concatenated over segments (orders).

    ``wavelength`` in Angstrom; ``flux`` and ``error`` divided by the reduction's continuum when one
    is given (dimensionless); ``segment`` the 0-based segment index of each pixel; ``order`` the
    1-based HDU/order number of each segment.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    segment: np.ndarray
    order: np.ndarray
    name: str = ""
    metadata: dict = field(default_factory=dict)

    def good_pixels(self) -> np.ndarray:
        """Usable pixels: finite flux and error, error > 0."""
        return np.isfinite(self.flux) & np.isfinite(self.error) & (self.error > 0)


#: Column-name spellings (lower case) of the table reader, in order of preference (``waveobs``: iSpec's text files).
WAVELENGTH_COLUMNS = ("wavelength", "wave", "lambda", "wl", "lam", "wavelength_air", "wavelength_vac",
                      "wave_air", "wave_vac", "lambda_air", "lambda_vac", "wave_ang", "wavelength_ang",
                      "wave_nm", "wavelength_nm", "wave_um", "wavelength_um", "waveobs")
#: units stated by a wavelength column's name (its suffix), e.g. muler's ``wave_ang``
_NAME_UNITS = {"_ang": "Angstrom", "_nm": "nm", "_um": "um"}
FLUX_COLUMNS = ("flux", "spec", "spectrum", "flux_norm")
#: uncertainty spellings and their kind: "sigma" (1σ), "ivar" (1/σ²), "var" (σ²)
UNCERTAINTY_COLUMNS = (("uncertainty", "sigma"), ("error", "sigma"), ("err", "sigma"), ("sigma", "sigma"),
                       ("flux_err", "sigma"), ("flux_error", "sigma"), ("e_flux", "sigma"), ("ivar", "ivar"),
                       ("inverse_variance", "ivar"), ("variance", "var"), ("var", "var"))
#: pixel-quality columns whose non-zero values mark bad pixels: ``QUAL`` of the ESO Science Data Products
#: standard (ESO-044286, "0 = good data"; HARPS, UVES, FEROS, X-shooter, ESPRESSO archive spectra) and its spelling
#: ``quality``.  (A ``bitmask``/``mask`` column is different: APOGEE-style bits, some only informative.)
QUALITY_COLUMNS = ("qual", "quality")
#: header keywords that hold a barycentric (or heliocentric) correction, reported in the metadata
BARYCENTRIC_KEYWORDS = ("BARYCORR", "BERV", "BCV", "BARYVEL", "BC", "VBARY", "BARY_RV", "HELIOCOR", "VHELIO",
                        "HELIOVEL", "ESO DRS BERV", "ESO QC BERV", "ESO DRS BARYCORR", "SPECSYS")
_ANGSTROM_ALIASES = {"a", "aa", "å", "angstrom", "angstroms", "angstroem", "ang"}


def angstrom_per_unit(unit_text: str, where: str) -> float:
    """Angstrom per unit of a wavelength unit string (astropy.units; ``A``/``AA`` taken as Angstrom)."""
    import astropy.units as u

    text = unit_text.strip()
    if text.lower() in _ANGSTROM_ALIASES:
        return 1.0
    if text.lower() in ("micron", "microns", "um", "µm"):
        return 1e4
    try:
        try:
            unit = u.Unit(text, parse_strict="raise")
        except ValueError:  # IRAF's plural names (WAT1 "units=nanometers"): astropy knows the singular
            if not text.lower().endswith("s"):
                raise
            unit = u.Unit(text[:-1], parse_strict="raise")
        return float((1.0 * unit).to(u.AA).value)
    except (ValueError, u.UnitsError, TypeError) as exc:
        raise ValueError(f"{where}: wavelength unit {unit_text!r} is not a length astropy can convert to Angstrom") \
            from exc


def column_name_unit(name: str) -> str | None:
    """The wavelength unit a column's name states (``wave_ang`` -> "Angstrom", ``wavelength_nm`` -> "nm",
    ``wave_um`` -> "um"), or None."""
    lower = name.lower()
    return next((unit for suffix, unit in _NAME_UNITS.items() if lower.endswith(suffix)), None)


def infer_wavelength_unit(values: np.ndarray, where: str) -> tuple[float, str]:
    """Angstrom per unit guessed from the median wavelength (see the module docstring)."""
    med = float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")
    if 0.1 <= med < 30.0:
        return 1e4, "um"
    if 100.0 <= med < 3000.0:
        return NM_TO_ANGSTROM, "nm"
    if 3000.0 <= med <= 3e5:
        return 1.0, "Angstrom"
    raise ValueError(f"{where}: no wavelength unit given and median wavelength {med:g} fits none of um/nm/Angstrom; "
                     "pass wavelength_unit")


def stated_medium(headers, column_name: str = "") -> str | None:
    """'air', 'vacuum' or None from AIRORVAC / VACUUM / WAVEMED keywords or an _air/_vac column suffix."""
    name = column_name.lower()
    if name.endswith("_air"):
        return "air"
    if name.endswith("_vac"):
        return "vacuum"
    for header in headers:
        for key in ("AIRORVAC", "WAVEMED", "MEDIUM"):
            if key in header:
                text = str(header[key]).strip().lower()
                if text.startswith("air"):
                    return "air"
                if text.startswith("vac"):
                    return "vacuum"
        if "VACUUM" in header:
            value = header["VACUUM"]
            if isinstance(value, bool):
                return "vacuum" if value else "air"
            text = str(value).strip().lower()
            if text in ("t", "true", "1", "y", "yes"):
                return "vacuum"
            if text in ("f", "false", "0", "n", "no"):
                return "air"
    return None


def barycentric_cards(headers) -> dict:
    """Barycentric-correction keywords found in the headers (first occurrence wins), with comments."""
    found = {}
    for header in headers:
        for key in BARYCENTRIC_KEYWORDS:
            if key in header and key not in found:
                value = header[key]
                value = value if isinstance(value, (bool, int, float, str)) else str(value)
                found[key] = {"value": value, "comment": str(header.comments[key])}
    return found


def pick_column(names: list[str], choices) -> str | None:
    lower = {n.lower(): n for n in names}
    for choice in choices:
        if choice in lower:
            return lower[choice]
    return None


def uncertainty_to_sigma(values: np.ndarray, kind: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ivar":
            return np.where(values > 0, 1.0 / np.sqrt(np.where(values > 0, values, 1.0)), np.nan)
        if kind == "var":
            return np.where(values >= 0, np.sqrt(np.abs(values)), np.nan)
    return values


class _Orders:
    """Accumulates orders (segments) and the reading's provenance."""

    def __init__(self):
        self.wave, self.flux, self.err, self.order = [], [], [], []
        self.n_dropped = 0

    def add(self, wave, flux, err, order_number) -> None:
        wave, flux, err = (np.asarray(a, dtype=np.float64).ravel() for a in (wave, flux, err))
        finite = np.isfinite(wave)
        self.n_dropped += int((~finite).sum())
        wave, flux, err = wave[finite], flux[finite], err[finite]
        if wave.size == 0:
            return
        order = np.argsort(wave, kind="stable")
        self.wave.append(wave[order]); self.flux.append(flux[order]); self.err.append(err[order])
        self.order.append(order_number)

    def spectrum(self, name: str, metadata: dict) -> ObservedSpectrum:
        if not self.wave:
            raise ValueError(f"{name}: no pixel with a finite wavelength")
        seg = np.concatenate([np.full(w.size, i) for i, w in enumerate(self.wave)])
        spec = ObservedSpectrum(np.concatenate(self.wave), np.concatenate(self.flux), np.concatenate(self.err),
                                seg, np.asarray(self.order), name=name, metadata=metadata)
        metadata["n_dropped_nonfinite_wavelength"] = self.n_dropped
        metadata["n_masked_pixels"] = int((~spec.good_pixels()).sum())
        metadata["n_orders"] = len(self.wave)
        return spec


def convert_medium(wave: np.ndarray, stated: str | None, medium: str) -> tuple[np.ndarray, str]:
    """Convert Angstrom wavelengths to the requested medium; returns (wavelengths, medium of the result)."""
    if medium not in ("vacuum", "air", "as-given"):
        raise ValueError(f"medium must be 'vacuum', 'air' or 'as-given', got {medium!r}")
    if stated is None or medium == "as-given":
        return wave, stated or "unknown (not stated in the file; wavelengths as given)"
    if stated == medium:
        return wave, medium
    if medium == "vacuum":
        return air_to_vacuum(wave), "vacuum (converted from air)"
    return vacuum_to_air(wave), "air (converted from vacuum)"


def read_echelle_fits(path: str | Path, normalise: bool = True, wavelength_unit: str | None = None,
                      medium: str = "vacuum") -> ObservedSpectrum:
    """Read an échelle (or single-order) FITS spectrum in any of the layouts of the module docstring.

    Parameters
    ----------
    path : str or Path
    normalise : bool
        Divide flux and uncertainty by a ``continuum`` column when there is one.
    wavelength_unit : str, optional
        Unit of wavelength columns without TUNIT (default: inferred from the values).
    medium : {"vacuum", "air", "as-given"}
        Medium of the returned wavelengths when the file states its own (unstated: as given).

    Returns
    -------
    ObservedSpectrum with ``metadata``: format, wavelength_unit(+_source), medium, columns,
    barycentric keywords, masked/dropped pixel counts.
    """
    from astropy.io import fits

    path = Path(path)
    with fits.open(path) as hdul:
        primary = hdul[0].header
        tables = [(i, h) for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU) and h.data is not None]
        if tables:
            return _read_tables(path, primary, tables, normalise, wavelength_unit, medium)
        images = [(i, h) for i, h in enumerate(hdul)
                  if isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) and h.data is not None]
        if images:
            return _read_image(path, primary, images, wavelength_unit, medium)
    raise ValueError(f"{path}: no binary table and no 1-D image with data found")


def _read_tables(path, primary, tables, normalise, wavelength_unit, medium) -> ObservedSpectrum:
    orders = _Orders()
    meta = {"format": "fits-table", "columns": {}, "barycentric_correction": {}}
    units, sources, media = set(), set(), set()
    for number, hdu in tables:
        data, header = hdu.data, hdu.header
        names = list(data.columns.names)
        where = f"{path}: HDU {number}"
        wcol = pick_column(names, WAVELENGTH_COLUMNS)
        fcol = pick_column(names, FLUX_COLUMNS)
        ucol, ukind = None, None
        for spelling, kind in UNCERTAINTY_COLUMNS:
            ucol = pick_column(names, (spelling,))
            if ucol is not None:
                ukind = kind
                break
        missing = [label for label, col in (("wavelength", wcol), ("flux", fcol), ("uncertainty", ucol))
                   if col is None]
        if wcol is None and fcol is None and len(tables) > 1:  # an auxiliary table (not a spectrum): skip it
            meta.setdefault("skipped_hdus", {})[number] = names
            continue
        if missing:
            raise ValueError(f"{where} has no {'/'.join(missing)} column; columns found: {names} (accepted: "
                             f"wavelength {'/'.join(WAVELENGTH_COLUMNS[:5])}, flux {'/'.join(FLUX_COLUMNS)}, "
                             f"uncertainty {'/'.join(s for s, _ in UNCERTAINTY_COLUMNS)})")
        tunit = data.columns[wcol].unit
        if tunit:
            factor, unit_name, source = angstrom_per_unit(tunit, f"{where} column {wcol!r}"), str(tunit).strip(), "TUNIT"
        elif (named := column_name_unit(wcol)):
            factor, unit_name, source = angstrom_per_unit(named, where), named, "column name"
        elif wavelength_unit:
            factor, unit_name, source = angstrom_per_unit(wavelength_unit, where), wavelength_unit, "argument"
        else:
            factor, unit_name = infer_wavelength_unit(np.asarray(data[wcol], dtype=np.float64), where)
            source = "inferred from the values (no TUNIT)"
        units.add(unit_name); sources.add(source)
        stated = stated_medium((header, primary), wcol)
        wave = np.asarray(data[wcol], dtype=np.float64) * factor
        wave, result_medium = convert_medium(wave, stated, medium)
        media.add(result_medium)
        flux = np.asarray(data[fcol], dtype=np.float64)
        err = uncertainty_to_sigma(data[ucol], ukind)
        ccol = pick_column(names, ("continuum", "cont"))
        if normalise and ccol is not None:
            cont = np.asarray(data[ccol], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                flux, err = flux / cont, err / cont
        qcol = pick_column(names, QUALITY_COLUMNS)
        if qcol is not None:  # flagged pixels keep their values but get no uncertainty: masked
            err = np.where(np.asarray(data[qcol]) != 0, np.nan, err)
        meta["columns"][number] = {"wavelength": wcol, "flux": fcol, "uncertainty": f"{ucol} ({ukind})",
                                   "continuum": ccol if normalise else None, "quality": qcol}
        meta["barycentric_correction"].update(barycentric_cards((header,)))
        if wave.ndim == 2:  # one row per order: orders numbered by 1-based row
            meta["orders_are_table_rows"] = True
            for row in range(wave.shape[0]):
                orders.add(wave[row], np.broadcast_to(flux[row], wave[row].shape),
                           np.broadcast_to(err[row], wave[row].shape), row + 1)
        else:
            orders.add(wave, flux, err, number)
    if not meta["columns"]:
        raise ValueError(f"{path}: no table HDU has wavelength and flux columns; columns found: "
                         f"{meta.get('skipped_hdus')}")
    meta["barycentric_correction"] = {**barycentric_cards((primary,)), **meta["barycentric_correction"]}
    meta["hdus"] = sorted(meta["columns"])
    distinct = {tuple(sorted(c.items())) for c in meta["columns"].values()}
    if len(distinct) == 1:  # the usual case: every order has the same columns
        meta["columns"] = dict(next(iter(distinct)))
    meta.update(wavelength_unit=sorted(units)[0] if len(units) == 1 else sorted(units),
                wavelength_unit_source=sorted(sources)[0] if len(sources) == 1 else sorted(sources),
                medium=sorted(media)[0] if len(media) == 1 else sorted(media))
    return orders.spectrum(path.name, meta)


def _read_image(path, primary, images, wavelength_unit, medium) -> ObservedSpectrum:
    """A 1-D image with a linear wavelength axis, or an IRAF multispec/equispec image of orders (lines) and
    optionally bands (:mod:`stellarnn.spectra.iraf_wcs`)."""
    from . import iraf_wcs

    number, hdu = next(((i, h) for i, h in images if np.ndim(h.data) == 1
                        or (np.ndim(h.data) in (2, 3) and iraf_wcs.iraf_system(h.header))), (None, None))
    if hdu is None:
        raise ValueError(f"{path}: no binary table, no 1-D image and no IRAF multispec/equispec image; image HDUs "
                         f"have shapes {[np.shape(h.data) for _, h in images]}")
    header = hdu.header
    where = f"{path}: HDU {number}"
    data = np.asarray(hdu.data, dtype=np.float64)
    system = iraf_wcs.iraf_system(header)
    err, ukind, uname, bands = None, None, None, None
    if data.ndim == 3:  # IRAF bands: the extraction, raw extraction, sky, sigma ... (BANDIDn)
        roles = iraf_wcs.band_roles(header, data.shape[0])
        bands = {role: f"band {k + 1} ({str(header.get(f'BANDID{k + 1}', '')).strip() or 'no BANDID'})"
                 for role, k in roles.items()}
        flux = data[roles["flux"]]
        for role, kind in (("sigma", "sigma"), ("variance", "var")):
            if role in roles:
                err, ukind, uname = uncertainty_to_sigma(data[roles[role]], kind), kind, bands[role]
                break
    else:
        flux = data.reshape(-1, data.shape[-1])
    n_lines, n_pixels = flux.shape
    try:
        if system is None:
            raw, lines = iraf_wcs.linear_wavelengths(header, n_pixels, where)[None, :], [{"aperture": number}]
        else:
            raw, lines = iraf_wcs.multispec_lines(header, n_lines, n_pixels, where)
    except ValueError as exc:
        raise ValueError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    stated_unit, key = iraf_wcs.stated_wavelength_unit(header)
    if stated_unit:
        factor, unit_name, source = angstrom_per_unit(stated_unit, f"{where} {key}"), stated_unit, key
    elif wavelength_unit:
        factor, unit_name, source = angstrom_per_unit(wavelength_unit, where), wavelength_unit, "argument"
    else:
        factor, unit_name = infer_wavelength_unit(raw[np.isfinite(raw)], where)
        source = "inferred from the values (no CUNIT1 or WAT1 units)"
    if str(header.get("CTYPE1", "")).upper().startswith("AWAV"):
        stated = "air"
    else:
        stated = stated_medium((header, primary))
    wave, result_medium = convert_medium(raw * factor, stated, medium)
    if bands is None:  # an uncertainty image of the same shape
        for i, h in images:
            kind = {"UNCERTAINTY": "sigma", "ERROR": "sigma", "SIGMA": "sigma", "ERR": "sigma", "IVAR": "ivar",
                    "VARIANCE": "var"}.get(str(h.header.get("EXTNAME", "")).upper())
            if i != number and kind and np.shape(h.data) == np.shape(hdu.data):
                err, ukind, uname = uncertainty_to_sigma(h.data, kind).reshape(flux.shape), kind, h.header["EXTNAME"]
                break
    if ukind is None:
        found = [h.header.get("EXTNAME", h.name) for _, h in images]
        if bands:
            found = [f"BANDID{k + 1} = {str(header.get(f'BANDID{k + 1}', '')).strip()!r}"
                     for k in range(data.shape[0])]
        raise ValueError(f"{where}: spectrum without an uncertainty (a sigma or variance band, or an extension of "
                         f"the same shape with EXTNAME UNCERTAINTY/ERROR/SIGMA/IVAR/VARIANCE); found: {found}")
    orders = _Orders()
    for k, line in enumerate(lines):
        orders.add(wave[k], flux[k], err[k], line.get("aperture", k + 1))
    fmt = "fits-1d-image" if system is None else f"iraf-{system}"
    meta = {"format": fmt, "columns": {number: {"wavelength": "WCS axis 1" if system is None else f"IRAF {system} WCS",
                                                "flux": bands["flux"] if bands else "image",
                                                "uncertainty": f"{uname} ({ukind})"}},
            "barycentric_correction": barycentric_cards((primary, header)), "wavelength_unit": unit_name,
            "wavelength_unit_source": source, "medium": result_medium}
    if system is not None:
        meta["iraf_apertures"] = lines
    return orders.spectrum(path.name, meta)


def from_spectrum1d(spectrum, name: str = "Spectrum1D", medium: str | None = None) -> ObservedSpectrum:
    """An :class:`ObservedSpectrum` from a specutils ``Spectrum1D`` or any object like it.

    Duck-typed: ``spectral_axis`` (an astropy Quantity of wavelength, frequency or energy, converted
    with ``u.spectral()``), ``flux`` (Quantity or array, 1-D or 2-D = orders × pixels), optional
    ``uncertainty`` (an astropy NDUncertainty: ``uncertainty_type`` ``std``, ``ivar`` or ``var``, values
    in ``.array``) and optional boolean ``mask`` (True = bad, the specutils convention). ``medium``
    states the medium of the wavelengths (not converted); specutils does not record it.
    """
    import astropy.units as u

    if not hasattr(spectrum, "spectral_axis") or not hasattr(spectrum, "flux"):
        raise TypeError(f"{name}: expected a Spectrum1D-like object with .spectral_axis and .flux, "
                        f"got {type(spectrum).__name__}")
    axis = spectrum.spectral_axis
    try:
        wave = np.asarray(u.Quantity(axis).to(u.AA, equivalencies=u.spectral()).value, dtype=np.float64)
    except (u.UnitsError, TypeError) as exc:
        raise ValueError(f"{name}: spectral_axis in {getattr(axis, 'unit', 'no unit')!s} cannot be converted "
                         "to Angstrom") from exc
    flux = np.asarray(getattr(spectrum.flux, "value", spectrum.flux), dtype=np.float64)
    unc = getattr(spectrum, "uncertainty", None)
    if unc is None:
        raise ValueError(f"{name}: Spectrum1D has no uncertainty (blasé weights pixels by 1/σ²)")
    kind = {"std": "sigma", "ivar": "ivar", "var": "var"}.get(getattr(unc, "uncertainty_type", "std"))
    if kind is None:
        raise ValueError(f"{name}: uncertainty type {unc.uncertainty_type!r} is not std, ivar or var")
    err = uncertainty_to_sigma(np.asarray(getattr(unc, "array", unc), dtype=np.float64), kind)
    mask = getattr(spectrum, "mask", None)
    if mask is not None:
        flux = np.where(np.asarray(mask, dtype=bool), np.nan, flux)
    flux2, err2 = np.atleast_2d(flux), np.atleast_2d(err)
    wave2 = np.broadcast_to(np.atleast_2d(wave), flux2.shape)
    if err2.shape != flux2.shape:
        raise ValueError(f"{name}: uncertainty shape {err.shape} differs from flux {flux.shape}")
    orders = _Orders()
    for row in range(flux2.shape[0]):
        orders.add(wave2[row], flux2[row], err2[row], row + 1)
    meta = {"format": "spectrum1d", "wavelength_unit": str(getattr(axis, "unit", "")),
            "wavelength_unit_source": "Quantity", "medium": medium or "unknown (not stated; wavelengths as given)",
            "columns": {}, "barycentric_correction": {}}
    return orders.spectrum(name, meta)
