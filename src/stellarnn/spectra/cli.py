"""``stellarnn spectra info|plot``."""
from __future__ import annotations

import argparse

import numpy as np

from ..cli_arguments import non_negative_int, plot_file
from .apogee_grid import APOGEE_N_PIXELS, decode_pixmask
from .apstar import open_fits, read_apstar
from .apvisit import read_apogee_file, read_apvisit
from .aspcapstar import is_aspcapstar, read_aspcapstar
from .mwm import is_mwm_file, read_mwm_star
from .continuum import apogee_continuum
from .echelle_io import read_echelle_fits
from .generic_io import is_echelle_fits, read_spectrum
from .plotting import plot_apogee_spectrum, save_figure


def _kind(path: str) -> str:
    with open_fits(path) as hdul:
        shape = np.shape(hdul[1].data) if len(hdul) > 1 and hdul[1].data is not None else ()
        if is_aspcapstar(hdul):
            return "aspcapstar"
        if is_mwm_file(hdul):
            return "mwm"
    if shape and shape[-1] == APOGEE_N_PIXELS:
        return "apstar"
    if len(shape) == 2 and shape == (3, 4096):
        return "apvisit"
    return "echelle" if is_echelle_fits(path) else "generic"


def cmd_info(args) -> int:
    path = args.file
    kind = _kind(path) if path.lower().endswith((".fits", ".fit", ".fits.gz")) else "generic"
    if kind in ("aspcapstar", "mwm", "apstar"):
        a = {"aspcapstar": read_aspcapstar, "mwm": read_mwm_star, "apstar": read_apstar}[kind](path)
        what = {"aspcapstar": "aspcapStar (ASPCAP's pseudo-continuum-normalised spectrum)",
                "mwm": f"SDSS-V mwmStar (Astra {a.header.get('v_astra')}), {a.nvisits} APOGEE coadd(s)",
                "apstar": f"apStar, {a.nvisits} visit(s)"}[kind]
        print(f"{path}: {what}, 8575 px, {a.combined.wavelength[0]:.2f}-{a.combined.wavelength[-1]:.2f} Å (vacuum)")
        for k, v in a.header.items():
            print(f"  {k:10s} {v}")
        if kind == "aspcapstar":
            s = a.combined
            print(f"  S/N {s.snr:.1f}, {s.meta['n_bad_pixels']} pixels without data (flux 0, NaN or no error)")
        for s in a.visits if kind == "mwm" else [a.combined] + a.visits if kind == "apstar" else []:
            bits = ",".join(decode_pixmask(np.bitwise_or.reduce(s.bitmask))) or "none"
            name = s.meta.get("telescope", f"HDU {s.meta.get('hdu')}") if kind == "mwm" else \
                f"row {s.meta['row']} ({s.meta['kind']})"
            chosen = " (the combined spectrum)" if kind == "mwm" and s.meta["hdu"] == a.combined.meta["hdu"] else ""
            print(f"  {name}: S/N {s.snr:.1f}, {s.meta['n_bad_pixels']} pixels without data, bits set somewhere: "
                  f"{bits}{chosen}")
    elif kind == "apvisit":
        v = read_apvisit(path)
        print(f"{path}: apVisit, 3 chips x 4096 px")
        for k, val in v.header.items():
            print(f"  {k:10s} {val}")
        lsf = v.lsf
        for c in range(3):
            r = lsf.resolution(c, np.array([100, 2048, 4000]))
            print(f"  chip {c}: {v.wavelength[c].min():.1f}-{v.wavelength[c].max():.1f} Å, "
                  f"LSF resolving power {r[0]:.0f}/{r[1]:.0f}/{r[2]:.0f} (pixels 100/2048/4000)")
    elif kind == "echelle":
        e = read_echelle_fits(path)
        m = e.metadata
        print(f"{path}: échelle, {m['n_orders']} orders, {e.wavelength.size} px, {e.wavelength.min():.3f}-"
              f"{e.wavelength.max():.3f} Å, {m['n_masked_pixels']} pixels without data")
        print(f"  medium: {m['medium']}; unit: {m['wavelength_unit']}, {m['wavelength_unit_source']}")
        for key, card in m["barycentric_correction"].items():
            print(f"  {key:10s} {card['value']}  ({card['comment']})")
    else:
        s = read_spectrum(path)
        noise = f"S/N {s.snr:.1f}" if s.meta["has_uncertainty"] else "no uncertainty column"
        print(f"{path}: {len(s)} px, {s.wavelength[0]:.3f}-{s.wavelength[-1]:.3f} Å, {noise}")
        print(f"  medium: {s.meta['medium']}; unit: {s.meta['wavelength_unit']}, "
              f"{s.meta['wavelength_unit_source']}")
    return 0


def cmd_plot(args) -> int:
    a = read_apogee_file(args.file)
    spectra = [a.combined] + a.visits
    if args.row_index >= len(spectra):
        raise ValueError(f"{args.file}: --row-index {args.row_index} does not exist (rows 0-{len(spectra) - 1}: "
                         "0 = combined spectrum, 1.. = visits)")
    s = spectra[args.row_index]
    res = apogee_continuum(s.flux, s.error, s.bitmask)
    out = save_figure(plot_apogee_spectrum(s, res), args.output)
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectra", help="inspect, plot and normalise spectra (apStar, apVisit, aspcapStar, mwmStar, "
                                       "FITS, CSV)",
                       description="Spectrum files: APOGEE apStar/apVisit/aspcapStar, SDSS-V mwmStar and generic "
                                   "FITS/CSV.")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="spectra_command", metavar="ACTION")
    q = s.add_parser("info", help="summary of a spectrum file (header values, S/N, masks, LSF)")
    q.add_argument("file")
    q.set_defaults(func=cmd_info)
    q = s.add_parser("plot", help="plot an apStar spectrum (or an apVisit on the apStar grid, an aspcapStar or "
                                  "mwmStar): raw with continuum, and normalised (masked pixels shown)")
    q.add_argument("file")
    q.add_argument("-o", "--output", required=True, type=plot_file,
                   help="PNG path (.png is appended when there is no extension; .pdf and .svg also work)")
    q.add_argument("--row-index", type=non_negative_int, default=0,
                   help="0 = combined spectrum, 1.. = visits (default 0)")
    q.set_defaults(func=cmd_plot)
