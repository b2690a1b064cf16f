"""``stellarnn grid build|info`` and ``stellarnn synth``: synthetic spectra with PySME."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def cmd_grid_build(args) -> int:
    from .grid_builder import GridSpec, build_grid

    spec = GridSpec(name=f"apogee-{args.seed}", n=args.n, seed=args.seed, chunk_size=args.chunk_size)
    counts = build_grid(args.out, spec, processes=args.processes, progress=not args.quiet,
                        max_spectra=args.max_spectra)
    print(json.dumps(counts))
    return 0


def cmd_grid_info(args) -> int:
    from .grid_builder import load_grid

    data = load_grid(args.path, ok_only=False)
    ok = data["status"] == "ok"
    print(f"{args.path}: {len(data['index'])} spectra ({ok.sum()} ok, {(~ok).sum()} failed)")
    for j, name in enumerate(data["label_names"]):
        col = data["labels"][:, j]
        print(f"  {name:8s} {col.min():9.3f} .. {col.max():9.3f}")
    return 0


def cmd_synth(args) -> int:
    from ..spectra import apogee_wavelength, write_apstar
    from .linelists import load_line_list
    from .pysme_driver import APOGEE_SYNTHESIS_RANGE, ApogeeInstrument, PySMESynthesizer, StellarLabels

    wmin, wmax = APOGEE_SYNTHESIS_RANGE
    synth = PySMESynthesizer(wmin - 10, wmax + 10, load_line_list(wmin - 10, wmax + 10))
    labels = StellarLabels(args.teff, args.logg, args.m_h, args.v_micro)
    flux, cont = synth.synthesize(labels)
    norm = ApogeeInstrument(synth.wave).apply(flux)
    out = Path(args.output)
    if out.suffix.lower() in (".fits", ".fit"):
        header = {"OBJID": f"PYSME-{args.teff:.0f}-{args.logg:.2f}-{args.m_h:+.2f}", "NVISITS": 1,
                  "TEFF": args.teff, "LOGG": args.logg, "M_H": args.m_h}
        write_apstar(out, np.nan_to_num(norm, nan=1.0), np.full(norm.size, 1e-3), header=header)
    else:
        np.savetxt(out, np.column_stack([apogee_wavelength(), norm]), delimiter=",",
                   header="wavelength,flux", comments="")
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="build and inspect synthetic APOGEE spectrum grids (PySME)")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="grid_command", metavar="ACTION")
    q = s.add_parser("build", help="build or resume a grid (chunked, resumable, parallel)")
    q.add_argument("kind", choices=["apogee"])
    q.add_argument("--n", type=int, required=True, help="number of spectra in the grid")
    q.add_argument("--out", required=True, help="grid folder")
    q.add_argument("--seed", type=int, default=1, help="label seed (default 1; held-out grids use another)")
    q.add_argument("--processes", type=int, default=1)
    q.add_argument("--chunk-size", type=int, default=50)
    q.add_argument("--max-spectra", type=int, default=None, help="stop after this many new spectra")
    q.add_argument("-q", "--quiet", action="store_true")
    q.set_defaults(func=cmd_grid_build)
    q = s.add_parser("info", help="summary of a grid folder")
    q.add_argument("path")
    q.set_defaults(func=cmd_grid_info)

    p = sub.add_parser("synth", help="one PySME APOGEE spectrum (normalised, APOGEE LSF, 8575 px)")
    p.add_argument("teff", type=float)
    p.add_argument("logg", type=float)
    p.add_argument("m_h", type=float)
    p.add_argument("--v-micro", type=float, default=None, help="km/s (default: APOGEE relation)")
    p.add_argument("-o", "--output", required=True, help=".fits (apStar layout) or .csv")
    p.set_defaults(func=cmd_synth)
