"""Wavelengths of IRAF spectra: the linear, equispec and multispec spectral world coordinate systems.

IRAF's ``onedspec``/``echelle`` packages (and the many reductions built on ``apall`` and ``dispcor``) write
spectra as FITS images whose lines are the apertures (échelle orders or fibres), optionally with a third axis of
bands (``BANDIDn``: the optimal extraction, the raw extraction, the sky, the sigma).  Their wavelengths are
defined by F. Valdes (1993), *The IRAF/NOAO Spectral World Coordinate Systems* (``help specwcs`` in
``noao.onedspec``):

* **linear** and **equispec** (one dispersion for every line): ``w = CRVAL1 + CD1_1 (l - CRPIX1)`` at the
  logical pixel ``l`` (CDELT1 where CD1_1 is missing), log10 of the wavelength when ``DC-FLAG = 1`` (or a
  ``LOG`` CTYPE1);
* **multispec** (``WAT0_001 = 'system=multispec'``, CTYPE1 ``MULTISPE``): an attribute
  ``specN = "ap beam dtype w1 dw nw z aplow aphigh [functions]"`` per *physical* line N in the WAT2 keywords
  (the cards' 68-character values pasted together), with the physical pixel ``p = (l - LTV1) / LTM1_1``:

  - dtype 0: ``w = (w1 + dw (p - 1)) / (1 + z)``; dtype 1: ``w = 10 ** ((w1 + dw (p - 1)) / (1 + z))``;
  - dtype 2: ``w = sum_i wt_i (w0_i + W_i(p)) / (1 + z)`` over functions ``wt_i w0_i ftype_i [parameters]
    [coefficients]``: 1 Chebyshev and 2 Legendre polynomials (``order pmin pmax c_1..c_order`` in
    ``n = (p - (pmax + pmin) / 2) / ((pmax - pmin) / 2)``), 4 linear and 3 cubic splines (``npieces pmin pmax``
    and npieces + 1 or npieces + 3 coefficients in ``s = (p - pmin) / (pmax - pmin) npieces``, ``j = int(s)``,
    ``a = j + 1 - s``, ``b = s - j``; linear ``c_j a + c_(j+1) b``, cubic ``c_j a^3 + c_(j+1) (1 + 3a(1 + ab)) +
    c_(j+2) (1 + 3b(1 + ab)) + c_(j+3) b^3``), 5 a pixel array (``ncoords`` wavelengths at physical pixels 1, 2,
    …, linearly interpolated) and 6 a sampled array (``ncoords`` and a dummy field, then pairs of physical pixel
    and wavelength);
  - only the first ``nw`` pixels of a line are valid: the others get NaN wavelengths; dtype -1 (not dispersion
    calibrated) is refused.

The unit is WAT1's ``units`` attribute (IRAF writes ``Angstroms``) or CUNIT1; without either the callers infer it
from the values, as for every file that states none.
"""
from __future__ import annotations

import re

import numpy as np

#: characters of one WAT card's value: IRAF splits its attribute strings at this length
WAT_CARD_LENGTH = 68
_ATTRIBUTE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|(\S+))')


def wat_string(header, axis: int) -> str:
    """The pasted WAT string of an axis (0 for all axes): the WATa_001, WATa_002 … values, each padded to the
    68 characters IRAF wrote (a FITS reader drops a value's trailing blanks, which may separate two fields)."""
    parts, k = [], 1
    while (key := f"WAT{axis}_{k:03d}") in header:
        parts.append(str(header[key]).ljust(WAT_CARD_LENGTH))
        k += 1
    return "".join(parts).strip()


def wat_attributes(text: str) -> dict[str, str]:
    """``name=value`` and ``name = "quoted value"`` attributes of a WAT string."""
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in _ATTRIBUTE.finditer(text)}


def iraf_system(header) -> str | None:
    """"multispec", "equispec" or None: the IRAF spectral WCS system of an image header."""
    system = wat_attributes(wat_string(header, 0)).get("system", "").lower()
    if system in ("multispec", "equispec"):
        return system
    if str(header.get("CTYPE1", "")).strip().upper() == "MULTISPE":
        return "multispec"
    return None


def stated_wavelength_unit(header) -> tuple[str | None, str | None]:
    """The dispersion axis's unit as the header states it and the keyword that does: WAT1's ``units`` attribute,
    else CUNIT1; (None, None) when neither does."""
    units = wat_attributes(wat_string(header, 1)).get("units")
    if units:
        return units, "WAT1 units"
    cunit = str(header.get("CUNIT1", "")).strip()
    return (cunit, "CUNIT1") if cunit else (None, None)


def linear_wavelengths(header, n_pixels: int, where: str = "") -> np.ndarray:
    """Wavelengths (the header's unit) of the logical pixels 1..n_pixels of a linear or log-linear axis 1.

    Raises
    ------
    ValueError
        CRVAL1 or the step (CD1_1/CDELT1) is missing or not a number.
    """
    step = header.get("CD1_1", header.get("CDELT1"))
    for key, value in (("CRVAL1", header.get("CRVAL1")), ("CD1_1/CDELT1", step), ("CRPIX1", header.get("CRPIX1", 1))):
        if value is None:
            raise ValueError(f"{where}: no {key}: the image has no linear wavelength axis")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: keyword {key} = {value!r} is not a number")
    grid = float(header["CRVAL1"]) + float(step) * (np.arange(n_pixels) + 1.0 - float(header.get("CRPIX1", 1)))
    log = "LOG" in str(header.get("CTYPE1", "")).upper() or header.get("DC-FLAG", 0) == 1
    return 10.0 ** grid if log else grid


def _take(fields: list[float], start: int, count: int, what: str) -> list[float]:
    if start + count > len(fields):
        raise ValueError(f"{what}: the attribute ends after {len(fields)} fields, {start + count} needed")
    return fields[start:start + count]


def _check_range(pmin: float, pmax: float, what: str) -> None:
    if not pmax > pmin:  # the normalised coordinate divides by pmax - pmin
        raise ValueError(f"{what}: dispersion function range pmin {pmin:g} >= pmax {pmax:g}")


def dispersion_function(fields: list[float], p: np.ndarray, what: str = "spec") -> np.ndarray:
    """Wavelengths at physical pixels ``p`` of one multispec attribute's numeric fields (module docstring)."""
    _, _, dtype, w1, dw, nw, z = _take(fields, 0, 7, what)
    if dtype == 0:
        w = (w1 + dw * (p - 1.0)) / (1.0 + z)
    elif dtype == 1:
        w = 10.0 ** ((w1 + dw * (p - 1.0)) / (1.0 + z))
    elif dtype == 2:
        w, i = np.zeros_like(p), 9
        if len(fields) <= i:
            raise ValueError(f"{what}: nonlinear dispersion (dtype 2) without a function")
        while i < len(fields):
            weight, w0, ftype = _take(fields, i, 3, what)
            i += 3
            if ftype in (1, 2):  # Chebyshev, Legendre: order pmin pmax c_1 .. c_order
                order, pmin, pmax = _take(fields, i, 3, what)
                _check_range(pmin, pmax, what)
                coefficients = _take(fields, i + 3, int(order), what)
                i += 3 + int(order)
                n = (p - (pmax + pmin) / 2.0) / ((pmax - pmin) / 2.0)
                series = np.polynomial.chebyshev.chebval if ftype == 1 else np.polynomial.legendre.legval
                value = series(n, coefficients)
            elif ftype in (3, 4):  # cubic, linear spline: npieces pmin pmax c_0 .. c_(npieces + 2 or 0)
                npieces, pmin, pmax = _take(fields, i, 3, what)
                _check_range(pmin, pmax, what)
                npieces = int(npieces)
                if npieces < 1:
                    raise ValueError(f"{what}: a spline of {npieces} pieces")
                coefficients = np.asarray(_take(fields, i + 3, npieces + (3 if ftype == 3 else 1), what))
                i += 3 + coefficients.size
                s = (p - pmin) / (pmax - pmin) * npieces
                j = np.clip(np.floor(s).astype(int), 0, npieces - 1)  # s = npieces (p = pmax): the last piece
                a, b = j + 1 - s, s - j
                if ftype == 4:
                    value = coefficients[j] * a + coefficients[j + 1] * b
                else:
                    value = (coefficients[j] * a ** 3 + coefficients[j + 1] * (1 + 3 * a * (1 + a * b))
                             + coefficients[j + 2] * (1 + 3 * b * (1 + a * b)) + coefficients[j + 3] * b ** 3)
            elif ftype == 5:  # pixel array: ncoords, then wavelengths at physical pixels 1, 2, ...
                ncoords = int(_take(fields, i, 1, what)[0])
                table = _take(fields, i + 1, ncoords, what)
                i += 1 + ncoords
                value = np.interp(p, np.arange(1.0, ncoords + 1.0), table)
            elif ftype == 6:  # sampled array: ncoords, a dummy field, then (physical pixel, wavelength) pairs
                ncoords = int(_take(fields, i, 1, what)[0])
                pairs = np.asarray(_take(fields, i + 2, 2 * ncoords, what))
                i += 2 + 2 * ncoords
                value = np.interp(p, pairs[0::2], pairs[1::2])
            else:
                raise ValueError(f"{what}: unknown dispersion function type {ftype:g} (IRAF defines 1-6)")
            w = w + weight * (w0 + value) / (1.0 + z)
    elif dtype == -1:
        raise ValueError(f"{what}: not dispersion calibrated (dtype -1): no wavelengths")
    else:
        raise ValueError(f"{what}: unknown dispersion type {dtype:g} (IRAF defines -1, 0, 1, 2)")
    return np.where(p <= nw, w, np.nan)  # only the first nw physical pixels hold data


def _physical(header, axis: int, logical: np.ndarray) -> np.ndarray:
    """Physical coordinates of logical ones along an axis: ``(l - LTVa) / LTMa_a`` (defaults 0 and 1)."""
    return (logical - float(header.get(f"LTV{axis}", 0.0))) / float(header.get(f"LTM{axis}_{axis}", 1.0))


def multispec_lines(header, n_lines: int, n_pixels: int, where: str = "") -> tuple[np.ndarray, list[dict]]:
    """Wavelengths (n_lines, n_pixels) in the header's unit, NaN beyond a line's valid pixels, and each line's
    ``{"aperture", "beam", "line"}`` (``line``: the physical line whose specN attribute gave them).

    A one-dimensional image is the physical line its WAXMAP01 keyword names, or the one specN attribute there is.
    """
    system = iraf_system(header)
    if system == "equispec":
        wave = linear_wavelengths(header, n_pixels, where)
        apnum = [str(header.get(f"APNUM{k + 1}", "")).split() for k in range(n_lines)]
        info = [{"aperture": int(float(a[0])) if a else k + 1, "beam": int(float(a[1])) if len(a) > 1 else None,
                 "line": k + 1} for k, a in enumerate(apnum)]
        return np.broadcast_to(wave, (n_lines, n_pixels)).copy(), info
    attributes = {k: v for k, v in wat_attributes(wat_string(header, 2)).items() if re.fullmatch(r"spec\d+", k)}
    if not attributes:
        raise ValueError(f"{where}: a multispec image without specN attributes in its WAT2 keywords")
    if n_lines == 1 and header.get("NAXIS", 1) == 1:
        waxmap = str(header.get("WAXMAP01", "")).split()
        lines = [int(waxmap[3]) + 1] if len(waxmap) >= 4 and waxmap[2] == "0" else [int(next(iter(attributes))[4:])]
    else:
        lines = [int(round(v)) for v in _physical(header, 2, np.arange(1.0, n_lines + 1.0))]
    p = _physical(header, 1, np.arange(1.0, n_pixels + 1.0))
    wave, info = np.full((n_lines, n_pixels), np.nan), []
    for k, line in enumerate(lines):
        text = attributes.get(f"spec{line}")
        if text is None:
            raise ValueError(f"{where}: no spec{line} attribute for image line {k + 1} (have {sorted(attributes)})")
        try:
            fields = [float(f) for f in text.split()]
        except ValueError as exc:
            raise ValueError(f"{where}: spec{line} = {text[:60]!r}… is not a list of numbers ({exc})") from None
        wave[k] = dispersion_function(fields, p, f"{where} spec{line}")
        info.append({"aperture": int(fields[0]), "beam": int(fields[1]), "line": line})
    return wave, info


def band_roles(header, n_bands: int) -> dict[str, int]:
    """0-based band indices of a 3-D IRAF spectrum by their ``BANDIDn`` keywords: ``flux`` (the band named
    "spectrum", else the first), and ``sigma`` or ``variance`` where a band is named so."""
    roles = {}
    for k in range(n_bands):
        name = str(header.get(f"BANDID{k + 1}", "")).strip().lower()
        if name.startswith("spectrum") and "flux" not in roles:
            roles["flux"] = k
        elif name.startswith(("sigma", "error", "uncertainty")) and "sigma" not in roles:
            roles["sigma"] = k
        elif name.startswith("variance") and "variance" not in roles:
            roles["variance"] = k
    roles.setdefault("flux", 0)
    return roles
