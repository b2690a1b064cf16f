"""Brackett 11 in the real APOGEE K dwarf against LTE synthesis with and without H I lines.

The question behind ``hydrogen_lines=False`` in the grids (``synthesis/pysme_driver.py``): does the
PySME synthesis with the Brackett series reproduce the real spectra?  For the real apStar spectrum
of 2M19485057 (data entry ``apstar-2M19485057``, continuum-normalised by ``apogee_continuum``) this
measures the depression of Br 11 (16811.1 A vacuum): the median flux of its sides (16770-16790 and
16845-16865 A) minus that of its core (16803-16819 A), the measure the driver's tests use.  The same
is measured on PySME spectra (ATLAS9 atmospheres, the grids' line list, APOGEE LSF and pixels) with
and without H I lines:

* at the star's header (Doppler) labels;
* at the labels the shipped APOGEENet and AstroNN give it (``bench/results/labels.json``, real_apstar);
* on a Teff scan at log g 4.6 and 5.0, [M/H] of the header, which gives the Teff at which the
  synthetic depression equals the real one (linear interpolation on the scan).

The metal lines in the window put a small depression into the measure without H I too; the
difference "with - without" is the Brackett line's own part.  One run, JSON out:

    python bench/brackett.py [--out bench/results/brackett.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from stellarnn.data import fetch
from stellarnn.spectra import apogee_continuum, apogee_wavelength, kept_pixel_index, read_apstar
from stellarnn.synthesis.linelists import load_line_list
from stellarnn.synthesis.pysme_driver import (ApogeeInstrument, PySMESynthesizer, StellarLabels,
                                              brackett_11_depression)

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "brackett.json"))
    ap.add_argument("--labels-json", default=str(Path(__file__).parent / "results" / "labels.json"))
    args = ap.parse_args(argv)
    from stellarnn.atmospheres import AtmosphereGrid

    t0 = time.perf_counter()
    star = read_apstar(fetch("apstar-2M19485057"))
    norm = apogee_continuum(star.combined.flux, star.combined.error, star.combined.bitmask)
    wl_real = apogee_wavelength()[kept_pixel_index()]
    real = brackett_11_depression(wl_real, norm.flux[0].numpy())
    hdr = star.header
    m_h = float(hdr["rv_feh"])
    atmospheres = AtmosphereGrid.load_atlas9()
    lines = load_line_list(16700, 16920)
    synth = {h: PySMESynthesizer(16740, 16880, lines, atmospheres=atmospheres, hydrogen_lines=h) for h in (False, True)}
    grid = apogee_wavelength()

    def depression(teff, logg, feh) -> dict:
        out = {}
        for h, syn in synth.items():
            flux, _ = syn.synthesize(StellarLabels(float(teff), float(logg), float(feh)))
            out["with_h" if h else "without_h"] = brackett_11_depression(grid, ApogeeInstrument(syn.wave).apply(flux))
        out["brackett_part"] = out["with_h"] - out["without_h"]
        return out

    points = {"doppler_header": {"teff": float(hdr["rv_teff"]), "logg": min(float(hdr["rv_logg"]), 5.0), "m_h": m_h}}
    labels_path = Path(args.labels_json)
    if labels_path.is_file():
        real_rows = json.loads(labels_path.read_text()).get("real_apstar", {})
        ids = [h.get("apogee_id", "") for h in real_rows.get("headers", [])]
        if real_rows.get("trained") and "2M19485057+5005279" in ids:
            i = ids.index("2M19485057+5005279")
            for net in ("apogeenet", "astronn"):
                row = real_rows[net][i]
                points[net] = {"teff": float(row["teff"]), "logg": min(float(row["logg"]), 5.0),
                               "m_h": float(row["fe_h"])}
    for p in points.values():
        p.update(depression(p["teff"], p["logg"], p["m_h"]))
    scan_teff = np.arange(4500.0, 5501.0, 100.0)
    scan = {}
    for logg in (4.6, 5.0):
        rows = [depression(t, logg, m_h) for t in scan_teff]
        with_h = np.array([r["with_h"] for r in rows])
        # Teff where the synthetic depression crosses the real one (the scan rises with Teff)
        cross = None
        above = np.flatnonzero(with_h >= real)
        if len(above) and above[0] > 0:
            j = above[0]
            cross = float(np.interp(real, with_h[j - 1:j + 1], scan_teff[j - 1:j + 1]))
        elif len(above) and above[0] == 0:
            cross = f"<= {scan_teff[0]:g}"
        scan[f"logg_{logg:g}"] = {"teff": scan_teff.tolist(), "with_h": with_h.tolist(),
                                  "without_h": [r["without_h"] for r in rows],
                                  "teff_matching_real_depression": cross}
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "star": {"apogee_id": hdr.get("apogee_id"), "snr": hdr.get("snr"), "rv_teff": float(hdr["rv_teff"]),
                       "rv_logg": float(hdr["rv_logg"]), "rv_feh": m_h},
              "measure": "median(sides 16770-16790, 16845-16865 A) - median(core 16803-16819 A), normalised flux",
              "real_depression": real, "synthetic_at": points, "teff_scan_m_h_header": scan,
              "seconds": time.perf_counter() - t0, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("real_depression", "synthetic_at")}, indent=1))
    for k, v in scan.items():
        print(k, "Teff where the synthesis matches the real depression:", v["teff_matching_real_depression"])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
