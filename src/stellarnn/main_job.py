"""The README's main job on the embedded default: ``stellarnn main --out DIR``.

1. Fetches the real data, reads the two real APOGEE apStar files (combined spectra and
   visits), continuum-normalises them (DR17 apogee_continuum) and writes a PNG per star, a
   FITS table and a CSV of the normalised spectra.
2. Writes synthetic apStar files (the apStar writer) from the held-out PySME grid of the
   APOGEE-like population (``grids/apogee_like_f0/test``: never trained on, 100 stars in each of the
   six populations of :mod:`stellarnn.synthesis.populations`, stored in population-balanced
   order, so the first 200 hold about 33 of each and the Kiel diagram looks like a survey's):
   normalised flux x the PySME continuum, at an arbitrary flux level, with Gaussian noise at S/N
   drawn log-uniformly in 50-200; the true labels and the population go into the primary header
   (TEFF, LOGG, M_H, VMICRO, VMACRO, VSINI, POPULAT).
3. Runs both label pipelines (APOGEENet, AstroNN, shipped weights) over the real and the
   synthetic files with the survey runner on the embedded default (local processes, SQLite
   ``DIR/stellarnn_results.sqlite``), exports the FITS summaries and the Kiel and flag plots,
   compares the synthetic stars' labels with their truth per population -- never pooled, the
   populations' information bounds differ by up to 30x (``DIR/synthetic_truth.png``,
   ``DIR/main_summary.json`` -> ``synthetic_truth.<pipeline>.<population>``) -- and reports the
   real stars' labels with their flags and out-of-distribution measures (``real_stars``): the two apStar
   stars' combined spectra and the two real apVisit files' visits (shifted to the rest frame by their VRAD
   and resampled onto the apStar grid, :func:`stellarnn.spectra.read_apogee_file`), each tagged with where
   its spectrum came from (``input``).
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np


#: the two real APOGEE apStar files shipped in a registry package (stellarnn.data)
REAL_STARS = ("apstar-2M17335483", "apstar-2M19485057")
#: the two real APOGEE apVisit files shipped in a registry package: one visit each, of two other stars
REAL_VISITS = ("apvisit-5095-55844-128", "apvisit-9518-57729-104")


def run_main(out: Path) -> dict:
    from astropy.io import fits
    from astropy.table import Table

    from .data import fetch
    from .spectra import apogee_continuum, apogee_wavelength, kept_pixel_index, read_apstar
    from .spectra.plotting import plot_apogee_spectrum, save_figure

    out.mkdir(parents=True, exist_ok=True)
    rows, summary = [], {}
    wl = apogee_wavelength()[kept_pixel_index()]
    for name in REAL_STARS:
        star = read_apstar(fetch(name))
        spectra = [star.combined] + (star.visits if star.nvisits > 1 else [])
        res = apogee_continuum(np.stack([s.flux for s in spectra]), np.stack([s.error for s in spectra]),
                               np.stack([s.bitmask for s in spectra]))
        png = save_figure(plot_apogee_spectrum(star.combined, res), out / f"{star.header['apogee_id']}.png")
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


REPO = Path(__file__).resolve().parents[2]
DEFAULT_SYNTHETIC_GRID = REPO / "grids" / "apogee_like_f0" / "test"


def write_synthetic_apstar(grid_dir, out_dir: Path, n: int, seed: int = 0, snr_range=(50.0, 200.0)) -> list[Path]:
    """Write ``n`` apStar files from a PySME grid: flux x continuum x level + noise, truth in the header."""
    from .spectra import write_apstar
    from .synthesis.grid_builder import load_grid
    from .synthesis.populations import population_of

    grid = load_grid(grid_dir)
    n = min(n, len(grid["index"]))
    names = list(grid["label_names"])
    labels = np.asarray(grid["labels"], dtype=float)
    population = population_of(*(labels[:, names.index(k)] for k in ("teff", "logg", "m_h")))
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    step = int(np.ceil(grid["flux"].shape[1] / grid["continuum"].shape[1]))
    x = np.arange(grid["flux"].shape[1])
    paths = []
    for i in range(n):  # file writing: one file per star
        cont = np.interp(x, np.arange(grid["continuum"].shape[1]) * step, grid["continuum"][i].astype(np.float64))
        level = 10 ** rng.uniform(2, 3.5)
        clean = np.nan_to_num(grid["flux"][i], nan=1.0) * cont * level
        snr = 10 ** rng.uniform(np.log10(snr_range[0]), np.log10(snr_range[1]))
        sigma = np.median(clean) / snr * np.sqrt(np.clip(clean / np.median(clean), 1e-3, None))
        flux = clean + sigma * rng.standard_normal(clean.size)
        lab = dict(zip(grid["label_names"], grid["labels"][i]))
        objid = f"PYSME-{grid['index'][i]:05d}"
        header = {"OBJID": objid, "APOGEE_ID": objid, "SNR": float(snr), "NVISITS": 1, "TEFF": float(lab["teff"]),
                  "LOGG": float(lab["logg"]), "M_H": float(lab["m_h"]), "VMICRO": float(lab["v_micro"]),
                  "POPULAT": str(population[i]) or "none", "ORIGIN": "stellarnn PySME grid (synthetic)"}
        for key, name in (("VMACRO", "v_macro"), ("VSINI", "v_sini")):
            if name in lab:  # grids before the APOGEE-like population have no broadening labels
                header[key] = float(lab[name])
        paths.append(write_apstar(out_dir / f"apStar-{objid}.fits", flux, sigma, header=header))
    return paths


def compare_with_truth(summary_fits: dict, truth: dict, out: Path) -> dict:
    """Robust scatter and bias of each pipeline's Teff, log g, [Fe/H] against the synthetic truth, per population.

    ``truth`` maps object ids to ``{"teff", "logg", "m_h", "population"}``.  Returns
    ``{pipeline: {"n": ..., "by_population": {population: {"n", label: {robust_scatter, median_bias,
    n_finite}}}}}`` -- no pooled figure: the populations' information bounds differ by up to 30x
    (``bench/results/crlb.json``).  The plot shows prediction against truth, coloured by population.
    """
    from astropy.stats import mad_std
    from astropy.table import Table
    from astropy.units import UnitsWarning

    from .figures import new_figure, save_figure
    from .synthesis.populations import POPULATIONS

    stats, labels = {}, (("teff", "teff", "K"), ("logg", "logg", "dex"), ("fe_h", "m_h", "dex"))
    colours = dict(zip(POPULATIONS, ("C0", "C1", "C2", "C3", "C4", "C5")))
    fig, axes = new_figure(nrows=len(summary_fits), ncols=3, figsize=(12, 3.8 * len(summary_fits)), squeeze=False)
    for r, (name, path) in enumerate(summary_fits.items()):
        with warnings.catch_warnings():  # 'dex' units are valid astropy units but not FITS-standard strings
            warnings.simplefilter("ignore", UnitsWarning)
            t = Table.read(path)
        ids = np.array([str(v) for v in t["object_id"]])
        sel = np.array([i in truth and k == "combined" for i, k in zip(ids, t["kind"])])
        population = np.array([truth[i]["population"] if s else "" for i, s in zip(ids, sel)])
        stats[name] = {"n": int(sel.sum()), "by_population": {}}
        for pop in [p for p in POPULATIONS if (population == p).any()] + (["none"] if (population == "none").any()
                                                                          else []):
            in_pop = sel & (population == pop)
            entry = stats[name]["by_population"][pop] = {"n": int(in_pop.sum())}
            for col, tcol, _ in labels:
                if col not in t.colnames:
                    continue
                d = np.asarray(t[col], dtype=float)[in_pop] - np.array([truth[i][tcol] for i in ids[in_pop]])
                ok = np.isfinite(d)
                entry[col] = {"robust_scatter": float(mad_std(d[ok])) if ok.any() else float("nan"),
                              "median_bias": float(np.median(d[ok])) if ok.any() else float("nan"),
                              "n_finite": int(ok.sum())}
        for c, (col, tcol, unit) in enumerate(labels):
            if col not in t.colnames or not sel.any():
                continue
            ax = axes[r, c]
            pred = np.asarray(t[col], dtype=float)
            true = np.array([truth[i][tcol] if s else np.nan for i, s in zip(ids, sel)])
            for pop, colour in list(colours.items()) + [("none", "0.5")]:
                m = sel & (population == pop)
                if m.any():
                    ax.scatter(true[m], pred[m], s=7, c=colour, label=pop)
            lim = [np.nanmin(true), np.nanmax(true)]
            ax.plot(lim, lim, "k-", lw=0.8)
            ax.set_xlabel(f"true {tcol} [{unit}]")
            ax.set_ylabel(f"{name} {col}")
            ax.set_title(f"{name} {col}", fontsize=9)
            if r == 0 and c == 0:
                ax.legend(fontsize=7, markerscale=1.5)
    save_figure(fig, out, dpi=110)
    return stats


#: columns of the real stars' report (labels, flags and the out-of-distribution measures)
REAL_STAR_COLUMNS = ("teff", "e_teff", "logg", "e_logg", "fe_h", "e_fe_h", "population", "result_flags", "flag_warn",
                     "flag_bad", "snr_error", "snr_robust", "line_snr", "ood_chi2", "ood_label_distance")


def real_star_report(summary_fits: dict, object_ids, visit_files=()) -> dict:
    """Each pipeline's row for each real star: labels, flags and OOD measures, and ``input`` (where it came from).

    The row of a star is its apStar file's combined spectrum or, for a file in ``visit_files`` (apVisit paths),
    its one visit on the apStar grid.
    """
    from astropy.table import Table
    from astropy.units import UnitsWarning

    report = {}
    for name, path in summary_fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitsWarning)
            t = Table.read(path)
        visits = {str(Path(v).resolve()) for v in visit_files}
        for row in t:
            oid = str(row["object_id"])
            from_visit = row["kind"] == "visit" and str(Path(str(row["source"])).resolve()) in visits
            if oid in object_ids and (row["kind"] == "combined" or from_visit):
                entry = {c: (row[c].item() if hasattr(row[c], "item") else row[c]) for c in REAL_STAR_COLUMNS
                         if c in t.colnames}
                entry["input"] = "apVisit on the apStar grid" if from_visit else "apStar combined"
                report.setdefault(oid, {})[name] = entry
    return report


def run_labels(out: Path, n_synthetic: int = 200, synthetic_grid=DEFAULT_SYNTHETIC_GRID, workers: int | None = None,
               progress: bool = True) -> dict:
    """Steps 2 and 3 of the module docstring."""
    import json

    from astropy.io import fits

    from .data import fetch
    from .runner import run_survey

    synthetic = write_synthetic_apstar(synthetic_grid, out / "synthetic_apstar", n_synthetic)
    truth = {}
    for p in synthetic:
        h = fits.getheader(p, 0)
        truth[h["OBJID"]] = {"teff": h["TEFF"], "logg": h["LOGG"], "m_h": h["M_H"],
                             "population": h.get("POPULAT", "none")}
    visit_files = [str(fetch(n)) for n in REAL_VISITS]
    inputs = [str(fetch(n)) for n in REAL_STARS] + visit_files + [str(out / "synthetic_apstar") + "/apStar-*.fits"]
    result = run_survey(("apogeenet", "astronn"), inputs, out_dir=out, workers=workers, progress=progress,
                        export_formats=("fits",))
    exports = {name: fmts["fits"] for name, fmts in result["exports"].items()}
    result["synthetic_truth"] = compare_with_truth(exports, truth, out / "synthetic_truth.png")
    headers = [fits.getheader(fetch(n), 0) for n in REAL_STARS + REAL_VISITS]  # each file's header read once
    real_ids = {str(h.get(k, "")) for h in headers for k in ("OBJID", "APOGEE_ID")}
    result["real_stars"] = real_star_report(exports, real_ids - {""}, visit_files)
    result["n_synthetic"] = len(synthetic)
    (out / "main_summary.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def cmd_main(args) -> int:
    out = Path(args.out)
    summary = run_main(out)
    for k, v in summary.items():
        print(f"{k}: {v}")
    if args.n_synthetic >= 0:
        result = run_labels(out, args.n_synthetic, args.synthetic_grid, workers=args.workers)
        for name, stats in result["synthetic_truth"].items():
            print(f"{name} on {stats['n']} synthetic stars, robust scatter (bias) per population:")
            for pop, entry in stats["by_population"].items():
                print(f"  {pop:18s} n={entry['n']:3d}  " + "  ".join(
                    f"{k} {v['robust_scatter']:.3g} ({v['median_bias']:+.3g})" for k, v in entry.items()
                    if isinstance(v, dict)))
        for oid, by_pipeline in result["real_stars"].items():
            for name, row in by_pipeline.items():
                print(f"{oid} ({row['input']}) {name}: Teff {row.get('teff', np.nan):.0f} K, "
                      f"log g {row.get('logg', np.nan):.2f}, "
                      f"[Fe/H] {row.get('fe_h', np.nan):+.2f} ({row.get('population') or 'no population'}), "
                      f"result_flags {row.get('result_flags')}, "
                      f"flag_bad {row.get('flag_bad')}, ood_chi2 {row.get('ood_chi2', np.nan):.3g}, "
                      f"ood_label_distance {row.get('ood_label_distance', np.nan):.3g}")
        for name, files in result["exports"].items():
            print(f"{name}: {files}")
        for name, files in result["plots"].items():
            print(f"{name} plots: {files}")
        print(f"database: {result['db_url']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("main", help="the main job on the embedded default (see README)")
    from .cli_arguments import output_folder

    p.add_argument("--out", default="outputs", type=output_folder, help="output folder (default: outputs)")
    p.add_argument("--n-synthetic", type=int, default=200,
                   help="synthetic apStar files written from the held-out PySME grid (-1: skip the label stage)")
    p.add_argument("--synthetic-grid", default=str(DEFAULT_SYNTHETIC_GRID), help="PySME grid folder")
    p.add_argument("--workers", type=int, default=None, help="runner worker processes (default: CPU count)")
    p.set_defaults(func=cmd_main)
