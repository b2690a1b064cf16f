"""Generic spectrum files: text tables (CSV, ECSV, whitespace-separated .txt/.dat, with or without a header) and FITS
(1-D image with a linear/log-linear WCS, or a binary table).

``read_spectrum`` also recognises APOGEE files (:func:`~stellarnn.spectra.read_apogee_file`: apStar, aspcapStar,
SDSS-V mwmStar, and apVisit shifted to the rest frame on the apStar grid) and returns their combined spectrum.
Column names, units and the medium follow the one convention of the observed-spectrum reader
(:mod:`stellarnn.spectra.echelle_io`): wavelength columns ``wavelength``/``wave``/``lambda``/``wl``/``lam``,
``wave_ang`` … (or ``loglam``, log10 of Angstrom, the SDSS spelling); the unit from the column's TUNIT or the
image's CUNIT1, else from the column's name (``wave_ang``, ``wavelength_nm``), else inferred from the values
(median 0.1–30: µm, 100–2999: nm, 3000–300 000: Angstrom; the source is kept in
``meta["wavelength_unit_source"]``); air wavelengths (``AIRORVAC``/``VACUUM``/``WAVEMED``,
an ``_air`` suffix, CTYPE1 ``AWAV``) converted to vacuum, since a :class:`~stellarnn.spectra.Spectrum` is in
vacuum Angstrom.  A file with several spectrum tables or 2-D columns is an échelle file: it is refused here
with a pointer to :func:`~stellarnn.spectra.echelle_io.read_echelle_fits`, not read one order at a time.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .apstar import open_fits, spectrum_from_arrays
from .apogee_grid import APOGEE_N_PIXELS
from .apvisit import APVISIT_N_CHIPS, APVISIT_N_PIXELS, read_apogee_file
from .mwm import is_mwm_file
from .echelle_io import (FLUX_COLUMNS, QUALITY_COLUMNS, UNCERTAINTY_COLUMNS, WAVELENGTH_COLUMNS, angstrom_per_unit,
                         column_name_unit, convert_medium, infer_wavelength_unit, pick_column, stated_medium,
                         uncertainty_to_sigma)
from .errors import SpectrumFileError
from .iraf_wcs import band_roles, iraf_system, linear_wavelengths, multispec_lines, stated_wavelength_unit
from .spectrum import Spectrum

_WAVE_NAMES = WAVELENGTH_COLUMNS + ("loglam",)
_FLUX_NAMES = FLUX_COLUMNS + ("f",)
_MASK_NAMES = ("bitmask", "mask", "pixmask")


def _wavelength_in_angstrom(path, values: np.ndarray, unit: str | None, hdu, default_unit: str | None = None,
                            column: str = "") -> tuple[np.ndarray, str, str]:
    """Angstrom wavelengths, the unit's name and where it came from (``unit``: the file's TUNIT/CUNIT1/ECSV
    unit or None; then the unit the ``column``'s name states; ``default_unit``: the caller's unit for files
    without one)."""
    where = f"{path}" + (f" [HDU {hdu}]" if hdu is not None else "")
    try:
        if unit:
            return values * angstrom_per_unit(unit, where), str(unit).strip(), "header"
        if (named := column_name_unit(column)):
            return values * angstrom_per_unit(named, where), named, "column name"
        if default_unit:
            return values * angstrom_per_unit(default_unit, where), default_unit, "argument"
        factor, name = infer_wavelength_unit(values, where)
    except ValueError as exc:
        raise SpectrumFileError(path, str(exc).removeprefix(f"{where}: "), hdu=hdu) from None
    return values * factor, name, "inferred from the values (no unit in the file)"


def _from_columns(path, cols: dict, hdu=None, units: dict | None = None, headers=(), stated: str | None = None,
                  wavelength_unit: str | None = None, on_bad_pixels: str = "mask") -> Spectrum:
    """A Spectrum from named columns; ``units`` maps column names to unit strings (TUNIT), ``headers`` are
    searched for the medium unless ``stated`` ("air"/"vacuum") gives it; ``wavelength_unit`` is the caller's
    unit for a wavelength column without one; ``on_bad_pixels`` as in :func:`spectrum_from_arrays`."""
    names = list(cols)
    wname, fname = pick_column(names, _WAVE_NAMES), pick_column(names, _FLUX_NAMES)
    if wname is None or fname is None:
        raise SpectrumFileError(path, f"needs wavelength and flux columns; found {names}", hdu=hdu)

    def column(name, dtype=np.float64):
        try:
            return np.asarray(cols[name], dtype=dtype).ravel()
        except (TypeError, ValueError, OverflowError) as exc:
            kind = "numbers" if dtype is np.float64 else "integers"
            raise SpectrumFileError(path, f"column {name!r} does not hold {kind} ({exc})", hdu=hdu) from None

    wave = column(wname)
    if wave.size == 0:
        raise SpectrumFileError(path, "no rows", hdu=hdu)
    if wname.lower() == "loglam":
        with np.errstate(over="ignore"):
            wave = 10 ** wave
    if not np.all(np.isfinite(wave)):
        raise SpectrumFileError(path, f"column {wname!r}: {np.sum(~np.isfinite(wave))} non-finite wavelengths",
                                hdu=hdu)
    if wname.lower() == "loglam":
        unit_name, unit_source = "Angstrom", "loglam is log10 of Angstrom (SDSS)"
    else:
        wave, unit_name, unit_source = _wavelength_in_angstrom(path, wave, (units or {}).get(wname), hdu,
                                                               wavelength_unit, wname)
    wave, medium = convert_medium(wave, stated or stated_medium(headers, wname), "vacuum")
    flux = column(fname)
    uname, ukind = next(((c, kind) for spelling, kind in UNCERTAINTY_COLUMNS
                         if (c := pick_column(names, (spelling,))) is not None), (None, None))
    # ivar <= 0 or var < 0 become NaN errors: pixels without information (ivar 0 in the Spectrum)
    error = uncertainty_to_sigma(column(uname), ukind) if uname is not None else np.ones_like(flux)
    mname = pick_column(names, _MASK_NAMES)
    mask = column(mname, np.int64) if mname is not None else np.zeros(flux.size, np.int64)
    qname = pick_column(names, QUALITY_COLUMNS)  # ESO's QUAL: non-zero = bad pixel (ivar 0)
    flagged = column(qname, np.int64) != 0 if qname is not None else np.zeros(flux.size, bool)
    if not (flux.size == wave.size == error.size == mask.size == flagged.size):
        raise SpectrumFileError(path, f"columns of different lengths ({wave.size} wavelengths, {flux.size} fluxes)",
                                hdu=hdu)
    if flagged.any():
        if on_bad_pixels == "raise":
            raise SpectrumFileError(path, f"{int(flagged.sum())} pixels flagged bad by column {qname!r}", hdu=hdu)
        error = np.where(flagged, np.nan, error)
    if not np.all(np.diff(wave[np.isfinite(wave)]) > 0):
        order = np.argsort(wave)
        wave, flux, error, mask = wave[order], flux[order], error[order], mask[order]
    meta = {"source": str(path), "has_uncertainty": uname is not None, "wavelength_unit": unit_name,
            "wavelength_unit_source": unit_source, "medium": medium}
    if qname is not None:
        meta["n_quality_flagged"] = int(flagged.sum())
    return spectrum_from_arrays(path, 0, wave, flux, error, mask, meta, on_bad_pixels, hdus=(hdu, hdu))


def _spectrum_tables(hdul) -> list[tuple[int, bool]]:
    """(HDU index, holds 2-D columns of several rows) of every table with wavelength and flux columns."""
    spectra = []
    for i, h in enumerate(hdul):
        if isinstance(h, (fits.BinTableHDU, fits.TableHDU)) and h.data is not None:
            wname = pick_column(h.columns.names, _WAVE_NAMES)
            if wname is not None and pick_column(h.columns.names, _FLUX_NAMES) is not None:
                spectra.append((i, np.ndim(h.data[wname]) > 1 and len(h.data) > 1))
    return spectra


def _iraf_orders(hdul) -> int:
    """Number of apertures (lines) of the first IRAF multispec/equispec image with more than one, else 0."""
    for h in hdul:
        if (isinstance(h, (fits.PrimaryHDU, fits.ImageHDU)) and h.header.get("NAXIS", 0) in (2, 3)
                and h.header.get("NAXIS2", 1) > 1 and iraf_system(h.header)):
            return int(h.header["NAXIS2"])
    return 0


def is_echelle_fits(path: str | os.PathLike) -> bool:
    """True for a FITS file that holds several orders: several spectrum tables, 2-D columns, or an IRAF
    multispec/equispec image of several lines (:mod:`stellarnn.spectra.iraf_wcs`)."""
    with open_fits(path) as hdul:
        spectra = _spectrum_tables(hdul)
        return len(spectra) > 1 or any(two_d for _, two_d in spectra) or _iraf_orders(hdul) > 0


def _refuse_echelle(path, hdul) -> None:
    """Refuse an échelle file (see :func:`is_echelle_fits`): one order of it is not the spectrum."""
    spectra = _spectrum_tables(hdul)
    n = _iraf_orders(hdul)
    if len(spectra) > 1 or any(two_d for _, two_d in spectra) or n:
        n = n or (len(spectra) if len(spectra) > 1 else len(hdul[spectra[0][0]].data))
        raise SpectrumFileError(path, f"an échelle file ({n} orders): read it with "
                                      "stellarnn.spectra.read_echelle_fits, not as one 1-D spectrum")


#: names given to the columns of a text file without a header, by their number: IRAF ``wspectext`` writes
#: (wavelength, flux); the three-column layout adds the 1-sigma uncertainty
POSITIONAL_COLUMNS = {2: ("wavelength", "flux"), 3: ("wavelength", "flux", "error")}


#: median per-pixel S/N range within which a positional third column is taken for what it is read as; a
#: third column read as a 1-sigma error whose S/N falls outside it, but inside it when read as an inverse
#: variance or a variance, is refused (:func:`_check_positional_uncertainty`)
PLAUSIBLE_MEDIAN_SNR = (0.3, 3000.0)


def _check_positional_uncertainty(path: Path, flux, third) -> None:
    """Refuse a third column read by position as a 1-sigma error that reads better as ivar or variance.

    Without a header nothing says what the third column holds.  The median S/N per pixel it implies,
    median(|flux| / e), median(|flux| sqrt(ivar)) or median(|flux| / sqrt(var)), is computed for each reading;
    when the 1-sigma reading falls outside :data:`PLAUSIBLE_MEDIAN_SNR` and another reading inside it, the
    file is refused with both figures (a silent guess would give the network wrong weights and the labels
    wrong errors).  Otherwise the 1-sigma reading stands, as before.
    """
    f = np.abs(np.asarray(flux, dtype=np.float64))
    u = np.asarray(third, dtype=np.float64)
    good = np.isfinite(f) & np.isfinite(u) & (f > 0) & (u > 0)
    if good.sum() < 3:
        return
    f, u = f[good], u[good]
    snr = {"a 1-sigma error": float(np.median(f / u)), "an inverse variance": float(np.median(f * np.sqrt(u))),
           "a variance": float(np.median(f / np.sqrt(u)))}
    lo, hi = PLAUSIBLE_MEDIAN_SNR
    if lo <= snr["a 1-sigma error"] <= hi:
        return
    better = [k for k in ("an inverse variance", "a variance") if lo <= snr[k] <= hi]
    if better:
        raise SpectrumFileError(path, f"the third column, read by position as a 1-sigma error, gives a median S/N of "
                                      f"{snr['a 1-sigma error']:.3g} per pixel, but {snr[better[0]]:.3g} read as "
                                      f"{better[0]}: add a header row naming the columns (e.g. wavelength,flux,ivar "
                                      f"or wavelength,flux,variance or wavelength,flux,error)")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _text_layout(path: Path) -> tuple[str | None, list[str] | None, str]:
    """How a text table is laid out: (delimiter: "," or None for whitespace, the column names when the
    file has no header row, where the names came from).

    The first line that is neither blank nor a ``#`` comment is a header row unless all its fields are numbers.
    A file without one takes its names from the last comment line above the data when that line names as many
    columns as there are, wavelength and flux among them (``# wavelength flux error``); otherwise from the
    columns' positions (:data:`POSITIONAL_COLUMNS`), and with more columns than those it is refused.
    """
    comments, first = [], None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            text = line.strip()
            if not text:
                continue
            if text.startswith("#"):
                comments.append(text.lstrip("#").strip())
                continue
            first = text
            break
    if first is None:
        raise SpectrumFileError(path, "no rows")
    delimiter = "," if "," in first else None
    fields = [f.strip() for f in first.split(delimiter)]
    if not all(_is_number(f) for f in fields):
        return delimiter, None, "header"
    if comments:
        names = [f.strip() for f in comments[-1].split(delimiter)]
        if (len(names) == len(fields) and pick_column(names, _WAVE_NAMES) is not None
                and pick_column(names, _FLUX_NAMES) is not None):
            return delimiter, names, "comment line above the data"
    if len(fields) not in POSITIONAL_COLUMNS:
        raise SpectrumFileError(path, f"{len(fields)} columns and no header naming them: add a header row "
                                      f"(e.g. wavelength,flux,error); only files of "
                                      f"{' or '.join(map(str, POSITIONAL_COLUMNS))} columns are read by position")
    return delimiter, list(POSITIONAL_COLUMNS[len(fields)]), "position (" + ", ".join(
        POSITIONAL_COLUMNS[len(fields)]) + "; the file names none)"


def read_spectrum_csv(path: str | os.PathLike, wavelength_unit: str | None = None,
                      on_bad_pixels: str = "mask") -> Spectrum:
    """A text table (CSV, or whitespace-separated ``.txt``/``.dat``) of wavelength and flux, optionally an
    error/ivar and a bitmask column.

    The columns are named by a header row; a file without one, by a ``#`` comment line above the data that
    names them all, else by position: (wavelength, flux) as IRAF ``wspectext`` writes, or (wavelength, flux,
    1-sigma error) (:data:`POSITIONAL_COLUMNS`; refused when the third column reads as an inverse variance or
    variance instead, :func:`_check_positional_uncertainty`); ``meta["column_names_source"]`` says which.  An ECSV file
    (astropy's CSV with a ``# %ECSV`` header, as :func:`write_spectrum_csv` writes) gives its columns' units; a
    plain table's wavelength unit is the one its column's name states (``wave_ang``), ``wavelength_unit`` or
    inferred from the values.  ``on_bad_pixels``: "mask" (non-finite flux and bad errors get ivar 0, the flux 0)
    or "raise" (refuse them, e.g. for a synthetic spectrum, which has none).
    """
    path = Path(path)
    if not path.is_file():
        raise SpectrumFileError(path, "file does not exist")
    with open(path, "rb") as fh:
        ecsv = fh.read(6) == b"# %ECS"
    source = "header"
    try:
        if ecsv:
            table = Table.read(path, format="ascii.ecsv")
        else:
            delimiter, names, source = _text_layout(path)
            kwargs = {"delimiter": delimiter} if delimiter else {}
            if names is None:
                table = Table.read(path, format="ascii.basic", comment="#", **kwargs)
            else:
                table = Table.read(path, format="ascii.no_header", comment="#", names=names, **kwargs)
    except SpectrumFileError:
        raise
    except Exception as exc:
        raise SpectrumFileError(path, f"not a readable text table ({exc})") from exc
    units = {c: str(table[c].unit) for c in table.colnames if table[c].unit is not None}
    spectrum = _from_columns(path, {c: table[c] for c in table.colnames}, units=units, headers=(table.meta,),
                             wavelength_unit=wavelength_unit, on_bad_pixels=on_bad_pixels)
    if source.startswith("position") and len(table.colnames) == 3:  # on the columns _from_columns has checked
        ivar = np.asarray(spectrum.ivar, dtype=np.float64)
        with np.errstate(divide="ignore"):
            _check_positional_uncertainty(path, spectrum.flux, np.where(ivar > 0, ivar ** -0.5, np.nan))
    spectrum.meta["column_names_source"] = source
    return spectrum


def read_spectrum_fits(path: str | os.PathLike, hdu: int | None = None, wavelength_unit: str | None = None
                       ) -> Spectrum:
    """A 1-D FITS spectrum: APOGEE apStar/aspcapStar/mwmStar/apVisit, an image with CRVAL1/CDELT1, or a table with
    named columns.

    ``hdu`` picks the HDU to read (default: the first with data); an échelle file is refused unless one of its
    orders is picked this way.  ``wavelength_unit`` is the unit of a wavelength column or axis without
    TUNIT/CUNIT1 (default: inferred from the values).
    """
    path = Path(path)
    with open_fits(path) as hdul:
        header0 = hdul[0].header
        # an image's NAXISn (a table's NAXIS1 counts bytes per row)
        h1 = hdul[1].header if len(hdul) >= 4 and isinstance(hdul[1], fits.ImageHDU) else {}
        shape = tuple(h1.get(f"NAXIS{n}") for n in range(h1.get("NAXIS", 0), 0, -1))  # numpy order
        apogee_layout = shape and (shape[-1] == APOGEE_N_PIXELS or shape == (APVISIT_N_CHIPS, APVISIT_N_PIXELS))
        if hdu is None and (apogee_layout or is_mwm_file(hdul)):
            pass  # APOGEE layouts: apStar, aspcapStar, apVisit, SDSS-V mwmStar (read below)
        else:
            index = hdu if hdu is not None else next(
                (i for i, h in enumerate(hdul) if h.data is not None and getattr(h.data, "size", 0) > 0), None)
            if index is None:
                raise SpectrumFileError(path, "no HDU with data")
            h = hdul[index]
            if isinstance(h, (fits.BinTableHDU, fits.TableHDU)):
                if hdu is None:  # an order chosen by the caller is read as asked
                    _refuse_echelle(path, hdul)
                return _from_columns(path, {c: h.data[c] for c in h.columns.names}, hdu=index,
                                     units={c.name: c.unit for c in h.columns}, headers=(h.header, header0),
                                     wavelength_unit=wavelength_unit)
            if hdu is None:
                _refuse_echelle(path, hdul)
            data = np.asarray(h.data, dtype=np.float64)
            hdr = h.header
            system = iraf_system(hdr)
            columns = {}
            if system and data.ndim in (2, 3) and data.shape[-2] == 1:  # one IRAF aperture, maybe with bands
                bands = data.reshape(-1, data.shape[-1])
                roles = band_roles(hdr, len(bands)) if data.ndim == 3 else {"flux": 0}
                data = bands[roles["flux"]]
                for role, name in (("sigma", "error"), ("variance", "variance")):
                    if role in roles:
                        columns[name] = bands[roles[role]]
                        break
            if data.ndim != 1:
                raise SpectrumFileError(path, f"image data of shape {data.shape} is not a 1-D spectrum "
                                              "(use a dedicated reader, e.g. apVisit or echelle)", hdu=index)
            try:  # a linear or log-linear axis, or one line of an IRAF multispec system
                wave = (multispec_lines(hdr, 1, data.size, "")[0][0] if system
                        else linear_wavelengths(hdr, data.size, ""))
            except ValueError as exc:
                raise SpectrumFileError(path, str(exc).removeprefix(": "), hdu=index) from None
            ctype = str(hdr.get("CTYPE1", "")).upper()
            keep = np.isfinite(wave)  # a multispec line's pixels beyond its nw hold no data
            columns = {"wavelength": wave[keep], "flux": data[keep], **{k: v[keep] for k, v in columns.items()}}
            return _from_columns(path, columns, hdu=index,
                                 units={"wavelength": stated_wavelength_unit(hdr)[0]}, headers=(hdr, header0),
                                 stated="air" if ctype.startswith("AWAV") else None,
                                 wavelength_unit=wavelength_unit)
    return read_apogee_file(path).combined  # apStar, aspcapStar, mwmStar, or apVisit on the apStar grid


#: suffixes of the text tables :func:`read_spectrum_csv` reads
TEXT_SUFFIXES = (".csv", ".ecsv", ".txt", ".dat")


def read_spectrum(path: str | os.PathLike, wavelength_unit: str | None = None) -> Spectrum:
    """Read a spectrum file by extension (.csv/.ecsv/.txt/.dat -> text table; .fits/.fit/.fits.gz -> FITS).

    ``wavelength_unit`` ("Angstrom", "nm", "um", ...) is used only where the file states none; without it the
    unit is inferred from the values (module docstring), which cannot tell UV Angstrom (1000–3000) from nm.
    """
    name = str(path).lower()
    if name.endswith(TEXT_SUFFIXES):
        return read_spectrum_csv(path, wavelength_unit)
    if name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
        return read_spectrum_fits(path, wavelength_unit=wavelength_unit)
    raise SpectrumFileError(path, f"unknown extension (expected {', '.join(TEXT_SUFFIXES)} or .fits)")


def write_spectrum_csv(path: str | os.PathLike, spectrum: Spectrum) -> Path:
    """CSV with columns wavelength (Angstrom, vacuum), flux, error, bitmask.

    Written as ECSV (astropy's comma-separated values with a ``#`` YAML header that gives the wavelength unit and
    ``AIRORVAC = vac``), so that :func:`read_spectrum_csv` reads it back exactly at any wavelength; tools that
    skip ``#`` lines read it as a plain CSV.
    """
    import astropy.units as u

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    error = np.where(np.isfinite(spectrum.error), spectrum.error, np.nan)
    t = Table([spectrum.wavelength * u.AA, spectrum.flux, error, spectrum.bitmask],
              names=("wavelength", "flux", "error", "bitmask"), meta={"AIRORVAC": "vac"})
    t.write(path, format="ascii.ecsv", delimiter=",", overwrite=True)
    return path
