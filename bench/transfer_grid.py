"""Cost and accuracy of PySME's radiative-transfer grid with the H I lines on; writes bench/results/transfer_grid.json.

The new grids (``grids/apogee_like``) compute the Brackett lines.  With them SME's adaptive transfer grid is
slow, so the grid builder solves the transfer on a fixed log-lambda grid (``transfer_resolution``).  Measured in
one run, per star (a 4700 K giant and a 6800 K dwarf, [M/H] 0, one core):

* seconds of one full APOGEE-range synthesis: H I off with SME's adaptive grid (the first grids' set-up), H I on
  with the adaptive grid, and H I on with fixed grids of R = 300,000 and 150,000;
* the difference of each fixed-grid spectrum from the adaptive one after the APOGEE LSF and resampling to the
  apStar pixels (rms and max over the covered pixels);

and, from the grid builder's own per-spectrum timings stored in the committed chunks of ``--grid``, the median
seconds per spectrum per population (those were measured while the machine also ran other jobs: an upper bound).
The machine is shared: load averages at start and end are recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STARS = (("giant_4700K", 4700.0, 2.5, 0.0), ("dwarf_6800K", 6800.0, 4.2, 0.0))
RESOLUTIONS = (3e5, 1.5e5)


def synthesis_costs() -> dict:
    from stellarnn.atmospheres import AtmosphereGrid
    from stellarnn.synthesis.linelists import load_line_list
    from stellarnn.synthesis.pysme_driver import ApogeeInstrument, PySMESynthesizer, StellarLabels

    atm = AtmosphereGrid.load_atlas9()
    lines = load_line_list(15090.0, 17010.0)
    out = {}
    for name, teff, logg, m_h in STARS:
        labels = StellarLabels(teff, logg, m_h)
        entry = {}
        adaptive = None
        for tag, hydrogen, resolution in (("no_hydrogen_adaptive", False, None), ("hydrogen_adaptive", True, None),
                                          *((f"hydrogen_fixed_R{int(r)}", True, r) for r in RESOLUTIONS)):
            synth = PySMESynthesizer(15090.0, 17010.0, lines, atmospheres=atm, hydrogen_lines=hydrogen,
                                     transfer_resolution=resolution)
            inst = ApogeeInstrument(synth.wave)
            t0 = time.perf_counter()
            flux, _ = synth.synthesize(labels)
            seconds = time.perf_counter() - t0
            spec = inst.apply(flux)
            entry[tag] = {"seconds": seconds}
            if tag == "hydrogen_adaptive":
                adaptive = spec
            elif adaptive is not None:
                d = spec - adaptive
                entry[tag].update(rms_vs_adaptive=float(np.sqrt(np.nanmean(d ** 2))),
                                  max_abs_vs_adaptive=float(np.nanmax(np.abs(d))))
            print(name, tag, entry[tag], flush=True)
        out[name] = entry
    return out


def grid_timings(folder: Path) -> dict:
    import h5py

    from stellarnn.synthesis.populations import POPULATIONS, population_of

    secs, labels = [], []
    for chunk in sorted((folder / "chunks").glob("chunk_*.h5")):
        with h5py.File(chunk, "r") as h:
            secs.append(h["seconds"][:])
            labels.append(h["labels"][:, :3])
    if not secs:
        return {"n": 0}
    secs, labels = np.concatenate(secs), np.concatenate(labels)
    pops = population_of(labels[:, 0], labels[:, 1], labels[:, 2])
    out = {"grid": os.path.relpath(folder, ROOT), "n": int(secs.size), "median_seconds": float(np.median(secs)),
           "note": "measured by the grid builder while other jobs shared the 2 cores: an upper bound"}
    out["by_population"] = {p: {"n": int((pops == p).sum()),
                                "median_seconds": float(np.median(secs[pops == p])) if (pops == p).any() else None}
                            for p in POPULATIONS}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default=str(ROOT / "grids" / "apogee_like_f0" / "test"))
    ap.add_argument("--skip-synthesis", action="store_true", help="only the grid builder's timings")
    ap.add_argument("-o", "--output", default=str(ROOT / "bench" / "results" / "transfer_grid.json"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = {"bench": "transfer_grid", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "load_average_start": os.getloadavg()}
    out = Path(args.output)
    previous = json.loads(out.read_text()) if out.exists() else {}
    result["synthesis"] = previous.get("synthesis") if args.skip_synthesis else synthesis_costs()
    result["grid_builder_timings"] = grid_timings(Path(args.grid))
    result["load_average_end"] = os.getloadavg()
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
