"""The README's main job on the embedded default: ``stellarnn main --out DIR``.

Fetches the real data, reads the two real APOGEE apStar files (combined spectra and
visits), continuum-normalises them (DR17 apogee_continuum) and writes a PNG per star, a
FITS table and a CSV of the normalised spectra.  Later stages (label pipelines, runner)
extend this job.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def run_main(out: Path) -> dict:
    from astropy.io import fits
    from astropy.table import Table

    from .data import fetch
    from .spectra import apogee_continuum, apogee_wavelength, kept_pixel_index, read_apstar
    from .spectra.plotting import plot_apogee_spectrum

    out.mkdir(parents=True, exist_ok=True)
    rows, summary = [], {}
    wl = apogee_wavelength()[kept_pixel_index()]
    for name in ("apstar-2M17335483", "apstar-2M19485057"):
        star = read_apstar(fetch(name))
        spectra = [star.combined] + (star.visits if star.nvisits > 1 else [])
        res = apogee_continuum(np.stack([s.flux for s in spectra]), np.stack([s.error for s in spectra]),
                               np.stack([s.bitmask for s in spectra]))
        png = plot_apogee_spectrum(star.combined, res, out / f"{star.header['apogee_id']}.png")
        for i, s in enumerate(spectra):
            rows.append((s.meta["apogee_id"], s.meta["kind"], s.meta["row"], s.snr,
                         star.header.get("rv_teff", np.nan), star.header.get("rv_logg", np.nan),
                         star.header.get("rv_feh", np.nan), res.flux[i].numpy().astype(np.float32),
                         res.error[i].numpy().astype(np.float32), bool(res.not_normalised[i].any())))
        summary[star.header["apogee_id"]] = {"png": str(png), "n_spectra": len(spectra)}
    table = Table(rows=rows, names=("apogee_id", "kind", "row", "snr", "rv_teff", "rv_logg", "rv_feh",
                                    "norm_flux", "norm_error", "partly_not_normalised"))
    table["snr"].description = "median per-pixel S/N of the raw spectrum"
    table["rv_teff"].unit, table["rv_teff"].description = "K", "Doppler (RV pipeline) Teff from the apStar header"
    table["rv_logg"].description = "Doppler log g (log10 cm s-2) from the apStar header"
    table["rv_feh"].description = "Doppler [Fe/H] (dex) from the apStar header"
    table["norm_flux"].description = "continuum-normalised flux on the 7514 kept pixels (DR17 apogee_continuum)"
    table["norm_error"].description = "normalised 1-sigma error"
    fits_path = out / "normalised_spectra.fits"
    table_hdu = fits.table_to_hdu(table)
    for i, col in enumerate(table.columns.values(), start=1):
        if col.description:
            table_hdu.header[f"TCOMM{i}"] = col.description[:68]
    hdus = fits.HDUList([fits.PrimaryHDU(), table_hdu,
                         fits.ImageHDU(wl.astype(np.float64), name="WAVELENGTH")])
    hdus[2].header["BUNIT"] = "Angstrom"
    hdus[2].header["COMMENT"] = "vacuum wavelength of the 7514 kept pixels"
    hdus.writeto(fits_path, overwrite=True)
    csv_path = out / "normalised_spectra.csv"
    header = ",".join(["wavelength"] + [f"{r[0]}_{r[1]}_{r[2]}" for r in rows])
    np.savetxt(csv_path, np.column_stack([wl] + [r[7] for r in rows]), delimiter=",", header=header,
               comments="", fmt="%.6g")
    summary["fits"], summary["csv"] = str(fits_path), str(csv_path)
    return summary


def cmd_main(args) -> int:
    summary = run_main(Path(args.out))
    for k, v in summary.items():
        print(f"{k}: {v}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("main", help="the main job on the embedded default (see README)")
    p.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    p.set_defaults(func=cmd_main)
