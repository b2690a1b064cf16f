"""Benchmark the APOGEENet and AstroNN label pipelines; writes bench/results/labels.json.

Measured in one run (medians over ``--repeats``):

* throughput of each pipeline end to end (``Pipeline.process`` on apStar spectra: preprocessing,
  network, uncertainties, noise model, flags) in spectra per second: AstroNN (published = shipped
  widths) with 100 MC-dropout passes; APOGEENet shipped (small) configuration with 20 noise
  draws, and the published ~72.6 M-parameter configuration on a few spectra;
* AstroNN's MC dropout on the network alone, same number of passes: factorised (layers before
  the first dropout computed once per spectrum) with one dropout mask set per pass shared by the
  spectra of a batch (the pipeline's form), factorised with independent masks per (spectrum,
  pass), and the naive form (every pass through the whole network);
* with ``--astronn-weights`` / ``--apogeenet-weights`` and ``--test-grid`` (default ``grids/apogee_like_f0/test``):
  accuracy on held-out PySME spectra at S/N 50, 100, 200 per population
  (:mod:`stellarnn.synthesis.populations`), the issue's keys
  ``accuracy.by_population.<population>.snr_<50|100|200>.<astronn|apogeenet|cannon|cannon_routed|fitter>.<label>``:
  robust scatter, bias, std, robust std (1.4826 MAD) and rms of (prediction - truth)/e, and for Teff, log g, [Fe/H] the
  ratio of the robust scatter to the population's median Cramér-Rao bound (``bench/results/crlb.json``);
  the pooled figures only under ``pooled_over_populations``; a short table at S/N 100 is printed;
* the Cannon (:mod:`stellarnn.labels.cannon`, Ness et al. 2015) trained inside the bench on the noise-free
  flux / true continuum of ``--cannon-train-grid`` (default: ``grids/apogee_like_f0/train`` once it holds
  2000 spectra, else the old ``grids/apogee/train``, ``train2``, ``train3``) and tested on the same inputs
  as the fitter; its labels, training time and test spectra per second under ``accuracy.cannon``;
* the routed Cannon (:class:`stellarnn.labels.cannon.RoutedCannon`, method ``cannon_routed``, the fair peer): one
  Cannon per population trained on the same spectra inside the population's box +- 250 K / 0.3 / 0.3 dex, routed
  by the global Cannon's labels (``--cannon-routing``), under the same keys; its training time, test spectra per
  second (global + regional fits) and the fraction routed to the true population under ``accuracy.cannon_routed``;
* on the same spectra and noise realisations, the least-squares (Payne-style) fitter
  (:func:`stellarnn.synthesis.fitter.fit_spectra` with the emulator ``--emulator-weights``):
  per-label robust scatter and bias side by side with the networks, its spectra per second and
  the ratio of each pipeline's throughput to it.  The fitter gets the noisy flux divided by the
  true continuum (the grid's), with ivar scaled alike, on all 8575 pixels, without RV (the grid
  spectra are at rest) and without a continuum polynomial (the normalisation is exact);
* the fitter on the emulator's own noisy spectra (a perfect model) at the held-out labels
  (``fitter_on_emulator_spectra``): what a least-squares fit reaches without model error, pooled over
  the held-out grid -- not a bound; the per-star Cramér-Rao bounds per population are in
  ``bench/results/crlb.json`` (``bench/crlb.py``);
* both pipelines on the two real apStar spectra, next to the header Doppler labels.

``--report`` runs nothing: it prints the README's per-population markdown tables (:func:`markdown_report`) from the
written ``--out`` file, cells above issue 19's targets in bold.

Without trained weights, timings use randomly initialised networks of the same size (speed does
not depend on weight values) and network accuracy is recorded as not measured; without the
emulator weights the fitter is skipped with the reason recorded.  Timings are wall-clock on this
machine with ``--threads`` torch threads; the load average at start and end is recorded (other
jobs share the CPU).

``--device cuda`` (or ``cuda:N``) runs only the GPU section and writes it under the key ``gpu`` of ``--out``
(the other keys kept): the GPU's name, end-to-end throughput of the pipelines with the shipped weights on
``--gpu-n-spectra`` in-memory spectra (AstroNN 100 MC passes, APOGEENet small 20 draws, APOGEENet full
configuration with random weights, 20 draws), and the agreement of the GPU labels with the CPU ones on a few
spectra (max |delta| / e per label).  ``--astronn-max-rows`` and ``--apogeenet-chunk-size`` are passed to the
pipelines when given.  Without a CUDA device the key records ``{"present": false, "reason": ...}`` and the
script exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from timing import median_seconds
from stellarnn.data import fetch
from stellarnn.labels.apogeenet.network import APOGEENET_FULL, APOGEENET_SMALL, APOGEENetResNet, count_parameters
from stellarnn.labels.astronn.network import OUTPUT_LABELS, build_astronn
from stellarnn.labels.pipeline import get_pipeline
from stellarnn.spectra import Spectrum, read_apstar
from stellarnn.train import save_checkpoint




def real_spectra() -> tuple[list[Spectrum], list[dict]]:
    stars = [read_apstar(fetch("apstar-2M17335483")), read_apstar(fetch("apstar-2M19485057"))]
    spectra = [s.combined for s in stars]
    return spectra, [{k: s.header.get(k) for k in ("apogee_id", "snr", "rv_teff", "rv_logg", "rv_feh")} for s in stars]


#: the columns of each real star's label row in the bench JSON (labels, flags and the OOD measures)
REAL_ROW_FIELDS = ("teff", "e_teff", "logg", "e_logg", "fe_h", "e_fe_h", "result_flags", "flag_warn", "flag_bad",
                   "ood_chi2", "line_snr", "ood_label_distance", "reason")


def real_visits() -> tuple[list[Spectrum], list[dict]]:
    """The registries' apVisit spectra, each shifted to its rest frame on the apStar grid, as the pipelines read them."""
    from stellarnn.main_job import REAL_VISITS
    from stellarnn.spectra.apvisit import read_apogee_file

    stars = [read_apogee_file(fetch(name)) for name in REAL_VISITS]
    return [s.combined for s in stars], [{"apogee_id": s.header.get("apogee_id"), "snr": s.header.get("snr"),
                                          "file": name} for s, name in zip(stars, REAL_VISITS)]


def test_batch(n: int, seed: int = 0) -> list[Spectrum]:
    """n apStar-like spectra: the real spectra with fresh noise at their own error level."""
    base, _ = real_spectra()
    a = read_apstar(fetch("apstar-2M17335483"))
    base = base + a.visits
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = base[i % len(base)]
        err = np.where(s.ivar > 0, 1 / np.sqrt(np.where(s.ivar > 0, s.ivar, 1)), 0)
        out.append(Spectrum(s.wavelength, s.flux + err * rng.standard_normal(s.flux.size), s.ivar, s.bitmask))
    return out


def random_weights(tmpdir: Path) -> dict:
    torch.manual_seed(0)
    paths = {}
    m, hp = build_astronn()
    paths["astronn"] = save_checkpoint(tmpdir / "astronn.pt", m, "astronn", hp, half=True, normalisation={
        "spectrum_mean": np.ones(7514), "label_mean": np.r_[4500.0, 2.5, np.zeros(20)],
        "label_std": np.r_[500.0, 1.0, 0.2 * np.ones(20)]})
    for name, hp in (("apogeenet_small", APOGEENET_SMALL), ("apogeenet_full", APOGEENET_FULL)):
        paths[name] = save_checkpoint(tmpdir / f"{name}.pt", APOGEENetResNet(**hp), "apogeenet",
                                      {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()}, half=True)
    return paths


def bench_throughput(paths: dict, n_spectra: int, n_full: int, repeats: int) -> dict:
    spectra = test_batch(n_spectra)
    out = {}
    p = get_pipeline("astronn", weights=paths["astronn"], mc_passes=100, batch_size=64)
    p.process(spectra[:2])
    t = median_seconds(lambda: p.process(spectra), repeats)
    out["astronn_mc100"] = {"n_spectra": n_spectra, "median_seconds": t, "spectra_per_second": n_spectra / t,
                            "target_spectra_per_second": 50,
                            "parameters": sum(q.numel() for q in p.model.parameters())}
    # factorised (shared / independent masks) vs naive MC dropout on the network alone
    x = torch.randn(16, 7514)
    model = p.model
    model.mc_dropout = True
    with torch.inference_mode():
        t_fact = median_seconds(lambda: model.forward_mc(x, 100), repeats)
        t_indep = median_seconds(lambda: model.forward_mc(x, 100, shared_masks=False), repeats)
        t_naive = median_seconds(lambda: model(x.repeat_interleave(100, dim=0)), repeats)
    model.mc_dropout = False
    out["astronn_mc_factorised_vs_naive"] = {"n_spectra": 16, "passes": 100, "factorised_seconds": t_fact,
                                             "factorised_independent_masks_seconds": t_indep,
                                             "naive_seconds": t_naive, "speedup": t_naive / t_fact,
                                             "speedup_shared_vs_independent_masks": t_indep / t_fact}
    p = get_pipeline("apogeenet", weights=paths["apogeenet_small"], n_draws=20)
    p.process(spectra[:2])
    t = median_seconds(lambda: p.process(spectra), repeats)
    out["apogeenet_small_draws20"] = {"n_spectra": n_spectra, "median_seconds": t, "spectra_per_second": n_spectra / t,
                                      "target_spectra_per_second": 20, "config": APOGEENET_SMALL,
                                      "parameters": count_parameters(p.model)}
    p = get_pipeline("apogeenet", weights=paths["apogeenet_full"], n_draws=20)
    t = median_seconds(lambda: p.process(spectra[:n_full]), 1)
    out["apogeenet_full_draws20"] = {"n_spectra": n_full, "seconds": t, "spectra_per_second": n_full / t,
                                     "parameters": count_parameters(p.model), "repeats": 1}
    return out


def true_continuum(grid) -> np.ndarray:
    """The grid's relative continuum on all 8575 pixels, as ``synthetic_observations`` applies it."""
    sparse = np.asarray(grid["continuum"], dtype=np.float64)
    npx = np.asarray(grid["flux"]).shape[1]
    step = int(np.ceil(npx / sparse.shape[1]))
    xs = np.arange(sparse.shape[1]) * step
    return np.stack([np.interp(np.arange(npx), xs, c) for c in sparse])


def _label_stats(pred: np.ndarray, truth: np.ndarray, err: np.ndarray | None) -> dict:
    """Robust scatter (1.4826 MAD) and median of pred - truth, and std / robust std / rms of (pred - truth)/err
    (``err`` None or without a finite value: not computed), over the rows where pred is finite.  The std (the
    issue's measure) removes the bias; the rms counts it, as the noise models' zero-mean calibration does."""
    from stellarnn.labels.astronn.training import robust_scatter

    res = pred - truth
    out = {"robust_scatter": float(robust_scatter(res[:, None])[0]), "bias": float(np.nanmedian(res))}
    if err is not None and np.isfinite(err).any():
        z = res / err
        out["std_z"] = float(np.nanstd(z))
        out["robust_std_z"] = float(1.4826 * np.nanmedian(np.abs(z - np.nanmedian(z))))
        out["rms_z"] = float(np.sqrt(np.nanmean(z ** 2)))
    return out


def load_fitter(path) -> tuple[object, list[str] | None, str]:
    """(emulator, its label names, '') or (None, None, reason)."""
    if not path:
        return None, None, "no --emulator-weights given"
    if not Path(path).is_file():
        return None, None, f"emulator weights {path} not found (the emulator is still being trained?)"
    from stellarnn.synthesis.emulator import load_emulator

    emulator, payload = load_emulator(path)
    names = (payload.get("provenance") or {}).get("label_names")
    return emulator, names, ""


ROOT = Path(__file__).resolve().parents[1]
SNRS = (50, 100, 200)
#: labels whose robust scatter is compared with the per-population Cramér-Rao bound (crlb.json; its fe_h is [M/H])
CRLB_LABELS = ("teff", "logg", "fe_h")
#: AstroNN outputs that copy another one in the synthetic grids (GRID_TO_ASTRONN: C I and Ti II share C and Ti);
#: the Cannon fits the source label once and reports it under both names
CANNON_COPIES = {"c_1_h": "c_h", "ti_2_h": "ti_h"}
#: broadening labels the Cannon fits as nuisance labels where every training grid has them (not reported)
CANNON_NUISANCE = ("v_micro", "v_macro", "v_sini")
#: the new training grid becomes the Cannon's default once it holds this many spectra (~8x the coefficients)
CANNON_MIN_TRAIN = 2000


def default_cannon_train_grids() -> list[str]:
    """``grids/apogee_like_f0/train`` once it holds >= CANNON_MIN_TRAIN spectra, else the old box grids that exist."""
    from stellarnn.synthesis.grid_builder import load_grid

    new = ROOT / "grids" / "apogee_like_f0" / "train"
    if (new / "spec.json").is_file():
        try:
            if len(load_grid(new)["index"]) >= CANNON_MIN_TRAIN:
                return [str(new)]
        except (ValueError, OSError):
            pass
    return [str(ROOT / "grids" / "apogee" / n) for n in ("train", "train2", "train3")
            if (ROOT / "grids" / "apogee" / n / "spec.json").is_file()]


def cannon_labels(labels: np.ndarray, names: list[str], cannon_names: list[str]) -> np.ndarray:
    """Grid labels -> the Cannon's labels: AstroNN [X/H] by name (:func:`grid_labels_to_astronn`), nuisance
    labels as they are."""
    from stellarnn.labels.astronn.training import grid_labels_to_astronn

    astro = grid_labels_to_astronn(labels, names)
    return np.column_stack([astro[:, OUTPUT_LABELS.index(n)] if n in OUTPUT_LABELS else labels[:, names.index(n)]
                            for n in cannon_names])


def train_cannon(folders: list[str], regularization: float, routing: str | None = None):
    """The Cannon trained on the noise-free synthetic flux (flux / true continuum) of the training grids.

    Labels: the AstroNN outputs (:data:`OUTPUT_LABELS`, without the copies in :data:`CANNON_COPIES`) and the
    broadening labels every grid has.  Grids of different specifications (old box / new APOGEE-like) are
    loaded one by one and concatenated.  Returns (model, info dict); with ``routing`` also the routed Cannon
    (:class:`~stellarnn.labels.cannon.RoutedCannon`, populations from teff, logg, fe_h = [M/H] of the grids)
    on the same spectra, sharing the global model, and its info dict: (model, info, routed, routed_info).
    """
    from stellarnn.labels.cannon import CannonModel, RoutedCannon, n_coefficients
    from stellarnn.synthesis.grid_builder import load_grid

    grids = [load_grid(f) for f in folders]
    nuisance = [n for n in CANNON_NUISANCE if all(n in g["label_names"] for g in grids)]
    names = [n for n in OUTPUT_LABELS if n not in CANNON_COPIES] + nuisance
    flux = np.concatenate([g["flux"] for g in grids])
    labels = np.concatenate([cannon_labels(np.asarray(g["labels"], dtype=np.float64), list(g["label_names"]), names)
                             for g in grids])
    del grids
    t0 = time.perf_counter()
    model = CannonModel.fit(flux, None, labels, names, regularization=regularization)
    seconds = time.perf_counter() - t0
    info = {"train_grids": [str(Path(f).resolve().relative_to(ROOT)) if Path(f).resolve().is_relative_to(ROOT)
                            else str(f) for f in folders],
            "label_names": names, "nuisance_labels": nuisance, "copied_labels": CANNON_COPIES,
            "n_labels": len(names),
            "training_input": "noise-free grid flux / true continuum (ivar = inf: s^2 is the model's own scatter)",
            "training_seconds": seconds, **model.training_summary}
    info["spectra_per_coefficient"] = info["n_train"] / n_coefficients(len(names))
    if routing is None:
        return model, info
    t0 = time.perf_counter()
    routed = RoutedCannon.fit(flux, None, labels, names, population_label_names=("teff", "logg", "fe_h"),
                              routing=routing, regularization=regularization, global_model=model)
    regional_seconds = time.perf_counter() - t0
    routed_info = {"train_grids": info["train_grids"], "label_names": names, "routing": routing,
                   "regional_training_seconds": regional_seconds, "training_seconds": seconds + regional_seconds,
                   "margin_teff_logg_m_h": routed.margin,
                   "min_train_spectra": routed.training_summary["min_train_spectra"],
                   "regions": routed.training_summary["regions"],
                   "note": "global Cannon (= method cannon) routes; one Cannon per population refits (RoutedCannon)"}
    return model, info, routed, routed_info


def _crlb_by_population() -> tuple[dict, str]:
    path = ROOT / "bench" / "results" / "crlb.json"
    if not path.is_file():
        return {}, f"{path.relative_to(ROOT)} missing: no CRLB ratios"
    return json.loads(path.read_text()).get("by_population", {}), str(path.relative_to(ROOT))


def population_accuracy(methods: dict, truth: np.ndarray, masks: dict, crlb: dict, snr: int) -> dict:
    """Per population, per method, per label: :func:`_label_stats` over the population's spectra the method
    labelled, ``n_spectra``; for Teff, log g, [Fe/H] also ``ratio_to_median_crlb`` (robust scatter / the
    population's median per-star bound at this S/N) and, where crlb.json has it (S/N 100),
    ``ratio_to_median_crlb_brackett_masked``: against the bound without the H I Brackett cores, the pixels a
    network trained with ``--brackett-mask`` never sees; ``fraction_at_bound`` where the method reports it."""
    out = {}
    for pop, mask in masks.items():
        bound = (crlb.get(pop) or {}).get(f"snr_{snr}") or {}
        masked = (crlb.get(pop) or {}).get(f"snr_{snr}_brackett_masked") or {}
        per_method = {}
        for name, m in methods.items():
            rows = mask & np.isfinite(m["pred"][:, 0])
            entry = {"n_spectra": int(rows.sum())}
            if rows.any():
                for lab in m["labels"]:
                    j = OUTPUT_LABELS.index(lab)
                    err = None if m["err"] is None else m["err"][rows, j]
                    st = _label_stats(m["pred"][rows, j], truth[rows, j], err)
                    if lab in CRLB_LABELS and bound.get(lab):
                        st["ratio_to_median_crlb"] = st["robust_scatter"] / bound[lab]
                    if lab in CRLB_LABELS and masked.get(lab):  # the bound without the Brackett cores
                        st["ratio_to_median_crlb_brackett_masked"] = st["robust_scatter"] / masked[lab]
                    if m.get("at_bound") is not None:
                        st["fraction_at_bound"] = float(m["at_bound"][rows, j].mean())
                    entry[lab] = st
                if m.get("reduced_chi2") is not None:
                    entry["median_reduced_chi2"] = float(np.nanmedian(m["reduced_chi2"][rows]))
            per_method[name] = entry
        out[pop] = per_method
    return out


def bench_accuracy(args) -> dict:
    """Accuracy on the held-out grid per population (issue 19 targets), AstroNN / APOGEENet / Cannon / fitter.

    Every method sees the same noise realisation at each S/N (``synthetic_observations(grid, snr, seed=snr)``).
    The networks get apStar-like spectra (flux x continuum + noise) through their pipelines; the fitter and the
    Cannon get the noisy flux / true continuum with ivar x continuum^2 on all 8575 pixels (the Cannon is
    trained on the noise-free training-grid flux normalised the same way).  Populations from the true Teff,
    log g, [M/H] (:mod:`stellarnn.synthesis.populations`).
    """
    emulator, emulator_labels, fitter_reason = load_fitter(args.emulator_weights)
    networks = [(n, w) for n, w in (("astronn", args.astronn_weights), ("apogeenet", args.apogeenet_weights)) if w]
    if not args.test_grid:
        return {"measured": False, "reason": "no held-out PySME test grid given (--test-grid)"}
    cannon_grids = [] if args.no_cannon else (args.cannon_train_grid or default_cannon_train_grids())
    if not (networks or emulator is not None or cannon_grids):
        return {"measured": False, "reason": "no trained network weights (--astronn-weights, --apogeenet-weights), "
                                             f"no emulator ({fitter_reason}) and no Cannon training grid"}
    from stellarnn.labels.astronn.training import GRID_TO_ASTRONN, grid_labels_to_astronn, synthetic_observations
    from stellarnn.spectra import apogee_wavelength
    from stellarnn.synthesis.fitter import fit_spectra
    from stellarnn.synthesis.grid_builder import grid_rows, load_grid
    from stellarnn.synthesis.populations import POPULATIONS, population_masks

    grid = load_grid(args.test_grid)
    if args.n_test:
        grid = grid_rows(grid, slice(None, args.n_test))
    names = list(grid["label_names"])
    grid_labels = np.asarray(grid["labels"], dtype=np.float64)
    masks = population_masks(grid_labels[:, names.index("teff")], grid_labels[:, names.index("logg")],
                             grid_labels[:, names.index("m_h")])
    crlb, crlb_source = _crlb_by_population()
    wl = apogee_wavelength()
    cont = true_continuum(grid)
    result = {"measured": True, "test_grid": str(args.test_grid), "n_test": int(len(grid["index"])),
              "snrs": list(SNRS), "networks": [n for n, _ in networks],
              "populations": {"source": "stellarnn.synthesis.populations, from the true Teff, log g, [M/H]",
                              "n": {p: int(masks[p].sum()) for p in POPULATIONS},
                              "n_in_none": int((~np.any([masks[p] for p in POPULATIONS], axis=0)).sum())},
              "crlb": {"source": crlb_source, "ratio_to_median_crlb": "robust scatter / the population's median "
                       "per-star Cramer-Rao bound at the same S/N (crlb.json by_population; its fe_h is [M/H])"},
              "stats": "robust_scatter = 1.4826 MAD of pred - truth; bias = median; std_z / robust_std_z / rms_z "
                       "of (pred - truth) / e (e: the method's own uncertainty; the fitter's only for Teff, log g, "
                       "[Fe/H]; rms_z counts the bias, std_z does not)"}
    if emulator is not None:
        emulator_labels = emulator_labels or names
        result["fitter"] = {"emulator_weights": str(args.emulator_weights), "fit_rv": False, "continuum_degree": -1,
                            "input": "noisy flux / true continuum, ivar x continuum^2, 8575 px",
                            "n_per_snr": min(args.fitter_n or len(cont), len(cont))}
    else:
        result["fitter"] = {"measured": False, "reason": fitter_reason}
    cannon = None
    if cannon_grids:
        cannon, result["cannon"], routed, result["cannon_routed"] = train_cannon(
            cannon_grids, args.cannon_regularization, routing=args.cannon_routing)
        result["cannon"]["input"] = result["cannon_routed"]["input"] = ("noisy flux / true continuum, ivar x "
                                                                         "continuum^2, 8575 px")
        if args.cannon_save:
            cannon.save(args.cannon_save, provenance={"train_grids": result["cannon"]["train_grids"]})
            result["cannon"]["saved"] = str(args.cannon_save)
            routed_path = Path(args.cannon_save).with_name(Path(args.cannon_save).stem + "_routed.pt")
            routed.save(routed_path, provenance={"train_grids": result["cannon"]["train_grids"]})
            result["cannon_routed"]["saved"] = str(routed_path)
    else:
        result["cannon"] = {"measured": False, "reason": "--no-cannon" if args.no_cannon else "no training grid found"}
        result["cannon_routed"] = dict(result["cannon"])
    fit_seconds = fit_n = cannon_seconds = cannon_n = routed_seconds = 0
    routed_to_truth = {}
    by_pop = {p: {"n": int(masks[p].sum())} for p in POPULATIONS}
    pooled = {"note": "over all held-out spectra, whose regimes' bounds differ by 30x: not a headline figure"}
    for snr in SNRS:
        obs = synthetic_observations(grid, snr, seed=snr)  # the same noise realisations for every method
        truth = grid_labels_to_astronn(obs["labels"], obs["label_names"])
        spectra = [Spectrum(wl, f, iv) for f, iv in zip(obs["flux"], obs["ivar"])]
        flux = obs["flux"] / cont
        ivar = np.where(np.isfinite(flux), obs["ivar"] * cont ** 2, 0.0)
        methods = {}
        for name, w in networks:
            rows = get_pipeline(name, weights=w).process(spectra)
            labels = OUTPUT_LABELS if name == "astronn" else CRLB_LABELS
            pred = np.full(truth.shape, np.nan)
            err = np.full(truth.shape, np.nan)
            for lab in labels:
                j = OUTPUT_LABELS.index(lab)
                pred[:, j] = [r[lab] for r in rows]
                err[:, j] = [r[f"e_{lab}"] for r in rows]
            methods[name] = {"pred": pred, "err": err, "labels": labels}
        if cannon is not None:
            t0 = time.perf_counter()
            fit = cannon.predict_labels(flux, ivar)
            cannon_seconds += time.perf_counter() - t0
            cannon_n += len(flux)
            col = [cannon.label_names.index(CANNON_COPIES.get(lab, lab)) for lab in OUTPUT_LABELS]
            methods["cannon"] = {"pred": fit.labels[:, col], "err": fit.label_errors[:, col], "labels": OUTPUT_LABELS,
                                 "at_bound": fit.at_bound[:, col], "reduced_chi2": fit.reduced_chi2}
            t0 = time.perf_counter()
            rfit = routed.predict_labels(flux, ivar, global_labels=fit)
            routed_seconds += time.perf_counter() - t0
            methods["cannon_routed"] = {"pred": rfit.labels[:, col], "err": rfit.label_errors[:, col],
                                        "labels": OUTPUT_LABELS, "at_bound": rfit.at_bound[:, col],
                                        "reduced_chi2": rfit.reduced_chi2}
            routed_to_truth[f"snr_{snr}"] = {
                p: float(np.mean(rfit.region[masks[p]] == p)) if masks[p].any() else None for p in POPULATIONS}
            routed_to_truth[f"snr_{snr}"]["mean_candidates"] = float(rfit.n_candidates.mean())
        if emulator is not None:
            n_fit = result["fitter"]["n_per_snr"]
            t0 = time.perf_counter()
            fit = fit_spectra(emulator, flux[:n_fit], ivar[:n_fit], fit_rv=False)
            fit_seconds += time.perf_counter() - t0
            fit_n += n_fit
            pad = np.full((len(flux) - n_fit, len(emulator_labels)), np.nan)
            pred = grid_labels_to_astronn(np.vstack([fit.labels, pad]), emulator_labels)
            # formal errors only for labels fitted directly ([X/H] = [X/M] + [M/H] would need covariances)
            err = grid_labels_to_astronn(np.vstack([fit.label_errors, pad]), emulator_labels)
            err[:, [OUTPUT_LABELS.index(lab) for lab in OUTPUT_LABELS if lab not in CRLB_LABELS]] = np.nan
            at_bound = np.zeros(truth.shape, dtype=bool)
            for j, lab in enumerate(OUTPUT_LABELS):
                if GRID_TO_ASTRONN[lab] in emulator_labels:
                    at_bound[:n_fit, j] = fit.at_bound[:, emulator_labels.index(GRID_TO_ASTRONN[lab])]
            chi2 = np.full(len(flux), np.nan)
            chi2[:n_fit] = fit.chi2 / np.maximum(fit.dof, 1)
            fitted = [lab for j, lab in enumerate(OUTPUT_LABELS) if np.isfinite(pred[:n_fit, j]).any()]
            methods["fitter"] = {"pred": pred, "err": err, "at_bound": at_bound, "reduced_chi2": chi2,
                                 "labels": fitted}
        for pop, entry in population_accuracy(methods, truth, masks, crlb, snr).items():
            by_pop[pop][f"snr_{snr}"] = entry
        everyone = {"all": np.ones(len(truth), dtype=bool)}
        pooled[f"snr_{snr}"] = population_accuracy(methods, truth, everyone, {}, snr)["all"]
    result["by_population"] = by_pop
    result["pooled_over_populations"] = pooled
    if fit_n:
        result["fitter"].update({"spectra_per_second": fit_n / fit_seconds, "seconds": fit_seconds, "n_fits": fit_n})
    if cannon_n:
        result["cannon"].update({"test_spectra_per_second": cannon_n / cannon_seconds, "test_seconds": cannon_seconds,
                                 "n_test_fits": cannon_n})
        total = cannon_seconds + routed_seconds  # the global fit routes: part of the routed Cannon's cost
        result["cannon_routed"].update({"test_spectra_per_second": cannon_n / total, "test_seconds": total,
                                        "regional_test_seconds": routed_seconds, "n_test_fits": cannon_n,
                                        "fraction_routed_to_true_population": routed_to_truth})
    return result


def population_table(accuracy: dict, snr: int = 100) -> str:
    """Robust scatter of Teff / log g / [Fe/H] per population and method at one S/N, with the median CRLB."""
    if not accuracy.get("measured"):
        return f"accuracy not measured: {accuracy.get('reason')}"
    crlb, _ = _crlb_by_population()
    methods = [m for m in ("astronn", "apogeenet", "cannon", "cannon_routed", "fitter")
               if any(m in (accuracy["by_population"][p].get(f"snr_{snr}") or {}) for p in accuracy["by_population"])]
    lines = [f"robust scatter at S/N {snr}: Teff [K] / log g / [Fe/H]   (n: held-out spectra; fitter: first "
             f"{accuracy['fitter'].get('n_per_snr', 0)} only)",
             f"{'population':<18}{'n':>4}  " + "".join(f"{m:>22}" for m in methods + ["median CRLB"])]
    for pop, entry in accuracy["by_population"].items():
        row = entry.get(f"snr_{snr}") or {}
        cells = []
        for m in methods:
            e = row.get(m) or {}
            cells.append("/".join(f"{e[lab]['robust_scatter']:.3g}" if lab in e else "-" for lab in CRLB_LABELS))
        b = (crlb.get(pop) or {}).get(f"snr_{snr}") or {}
        cells.append("/".join(f"{b[lab]:.3g}" if lab in b else "-" for lab in CRLB_LABELS))
        lines.append(f"{pop:<18}{entry['n']:>4}  " + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def _bold_if_above(value: float | None, target: float | None, fmt: str = ".3g") -> str:
    if value is None or not np.isfinite(value):
        return "-"
    text = f"{value:{fmt}}"
    return f"**{text}**" if target is not None and value > target else text


def markdown_report(result: dict, snr: int = 100) -> str:
    """The README's per-population tables from a written labels.json (``--report``): robust scatter at ``snr`` of
    every method against issue 19's targets (bold: above) and the median CRLB; each network's ratio to the bound;
    AstroNN's [X/H] where the issue sets a target; the std of (pred - truth)/e per S/N; the OOD fractions."""
    from stellarnn.labels.accuracy_guard import ABUNDANCE_TARGETS, POPULATION_TARGETS

    acc = result.get("accuracy") or {}
    if not acc.get("measured"):
        return f"accuracy not measured: {acc.get('reason')}"
    by_pop = acc["by_population"]
    crlb, _ = _crlb_by_population()
    methods = [m for m in ("astronn", "apogeenet", "cannon", "cannon_routed", "fitter")
               if any(m in (by_pop[p].get(f"snr_{snr}") or {}) for p in by_pop)]
    out = [f"Robust scatter at S/N {snr}, Teff [K] / log g / [Fe/H] (bold: above the target)", "",
           "| population | n | " + " | ".join(methods) + " | target | median CRLB |",
           "|---" * (len(methods) + 4) + "|"]
    for pop, entry in by_pop.items():
        row, target = entry.get(f"snr_{snr}") or {}, POPULATION_TARGETS.get(pop, {})
        cells = []
        for m in methods:
            e = row.get(m) or {}
            cells.append(" / ".join(_bold_if_above((e.get(lab) or {}).get("robust_scatter"), target.get(lab))
                                    for lab in CRLB_LABELS))
        bound = (crlb.get(pop) or {}).get(f"snr_{snr}") or {}
        out.append(f"| {pop} | {entry['n']} | " + " | ".join(cells) + " | "
                   + " / ".join(f"{target[lab]:g}" if lab in target else "-" for lab in CRLB_LABELS) + " | "
                   + " / ".join(f"{bound[lab]:.3g}" if lab in bound else "-" for lab in CRLB_LABELS) + " |")
    nets = [m for m in ("astronn", "apogeenet") if m in methods]
    out += ["", f"Ratio of the robust scatter to the population's median CRLB at S/N {snr} (issue 19: <= 3 in giants "
            "and dwarfs; bold: above 3)", "", "| population | " + " | ".join(nets) + " |",
            "|---" * (len(nets) + 1) + "|"]
    for pop, entry in by_pop.items():
        row = entry.get(f"snr_{snr}") or {}
        out.append(f"| {pop} | " + " | ".join(
            " / ".join(_bold_if_above(((row.get(m) or {}).get(lab) or {}).get("ratio_to_median_crlb"),
                                      3.0 if pop in ("giants", "dwarfs") else None, ".2f") for lab in CRLB_LABELS)
            for m in nets) + " |")
    for pop, targets in ABUNDANCE_TARGETS.items():
        e = ((by_pop.get(pop) or {}).get(f"snr_{snr}") or {}).get("astronn") or {}
        if e:
            out += ["", f"AstroNN [X/H] in {pop} at S/N {snr} (target {max(targets.values()):g}): " + ", ".join(
                f"{x[:-2].capitalize()} " + _bold_if_above((e.get(x) or {}).get("robust_scatter"), t, ".3f")
                for x, t in targets.items())]
    snrs = sorted(int(k[4:]) for k in next(iter(by_pop.values())) if k.startswith("snr_") and k[4:].isdigit())
    out += ["", "std of (pred - truth)/e, Teff / log g / [Fe/H] (target 0.8-1.2; bold: outside)", "",
            "| population | " + " | ".join(f"{m} S/N {s}" for m in nets for s in snrs) + " |",
            "|---" * (len(nets) * len(snrs) + 1) + "|"]
    for pop, entry in by_pop.items():
        cells = []
        for m in nets:
            for s in snrs:
                e = (entry.get(f"snr_{s}") or {}).get(m) or {}
                vals = [(e.get(lab) or {}).get("std_z") for lab in CRLB_LABELS]
                cells.append(" / ".join("-" if v is None or not np.isfinite(v) else
                                        (f"{v:.2f}" if 0.8 <= v <= 1.2 else f"**{v:.2f}**") for v in vals))
        out.append(f"| {pop} | " + " | ".join(cells) + " |")
    ood = result.get("ood") or {}
    if ood.get("bad_set"):
        out += ["", "OOD (target: bad set 100 % flagged, held-out <= 2 %)", "",
                "| network | bad set flagged | held-out flagged | held-out by population | spectra/s |",
                "|---|---|---|---|---|"]
        for m in nets:
            held = (ood.get("held_out") or {}).get(m) or {}
            pops = ", ".join(f"{p} {100 * v['flagged_fraction']:.1f} %" for p, v in
                             (held.get("flagged_fraction_by_population") or {}).items())
            rate = ((ood.get("throughput") or {}).get(m) or {}).get("spectra_per_second", float("nan"))
            out.append(f"| {m} | {100 * ood['bad_set'][m]['flagged_fraction']:.1f} % of "
                       f"{ood['bad_set']['n_spectra']} | {100 * held.get('flagged_fraction', float('nan')):.2f} % of "
                       f"{held.get('n_spectra', (ood.get('held_out') or {}).get('n_spectra'))} | {pops} | {rate:.1f} |")
    return "\n".join(out)


def fitter_on_emulator_spectra(args) -> dict:
    """The fitter on the emulator's own spectra (a perfect forward model) at the held-out labels.

    Gaussian noise at S/N 50, 100, 200 on the emulated flux; the fitter (same settings as in the
    accuracy runs) then only suffers from noise, label degeneracies and its own convergence.  A pooled
    figure over regimes whose bounds differ by 30x: compare per population with ``crlb.json`` instead.
    Also the fraction of fits whose chi^2 is at or below the chi^2 of the true labels (a global optimum), and the
    fraction above it among the fits whose true labels lie inside the emulator's training box (the fitter's bounds;
    issue 18, item 6, target <= 1 %), with the number outside it.
    """
    emulator, emulator_labels, reason = load_fitter(args.emulator_weights)
    if emulator is None or not args.test_grid:
        return {"measured": False, "reason": reason or "no --test-grid"}
    from stellarnn.labels.astronn.training import grid_labels_to_astronn
    from stellarnn.synthesis.fitter import fit_spectra
    from stellarnn.synthesis.grid_builder import load_grid

    grid = load_grid(args.test_grid)
    n = min(args.fitter_n or len(grid["index"]), len(grid["index"]))
    names = emulator_labels or list(grid["label_names"])
    # the emulator's labels by name (the 23-label grids add v_macro, v_sini, which the emulator may lack)
    labels = np.asarray(grid["labels"][:n], dtype=np.float64)[:, [list(grid["label_names"]).index(x) for x in names]]
    with torch.inference_mode():
        clean = emulator(torch.as_tensor(labels, dtype=torch.float32)).double().numpy()
    truth = grid_labels_to_astronn(labels, names)
    with torch.inference_mode():
        scaled = emulator.scale(torch.as_tensor(labels, dtype=torch.float32)).numpy()
    inside = ((scaled >= -0.5 - 1e-6) & (scaled <= 0.5 + 1e-6)).all(1)
    from stellarnn.synthesis.fitter import FIT_ABUNDANCE_STARTS, FIT_ITERATIONS, FIT_STARTS

    out = {"measured": True, "n_spectra": n, "model": "emulator spectra + Gaussian noise, fitted with the emulator",
           "fit_settings": {"n_starts": FIT_STARTS, "n_abundance_starts": FIT_ABUNDANCE_STARTS,
                            "n_iter": FIT_ITERATIONS}}
    rng = np.random.default_rng(12345)
    for snr in (50, 100, 200):
        flux = clean + rng.normal(0.0, 1.0 / snr, clean.shape)
        ivar = np.full_like(flux, float(snr) ** 2)
        fit = fit_spectra(emulator, flux, ivar, fit_rv=False)
        with torch.inference_mode():
            model = emulator(torch.as_tensor(fit.labels, dtype=torch.float32)).double().numpy()
        chi2_fit = ((flux - model) ** 2 * ivar).sum(1)
        chi2_true = ((flux - clean) ** 2 * ivar).sum(1)
        pred = grid_labels_to_astronn(fit.labels, names)
        err = grid_labels_to_astronn(fit.label_errors, names)
        per = {}
        for lab in ("teff", "logg", "fe_h"):
            j = OUTPUT_LABELS.index(lab)
            per[lab] = _label_stats(pred[:, j], truth[:, j], err[:, j])
            per[lab]["median_formal_error"] = float(np.median(err[:, j]))
        reached = chi2_fit <= chi2_true * (1 + 1e-6)
        per["fraction_chi2_at_or_below_truth"] = float(np.mean(reached))
        # a truth outside the emulator's training box is beyond the fit's bounds (and the emulator extrapolates
        # there): only the fits whose true labels lie inside it measure convergence (issue 18, item 6: <= 1 % above)
        per["n_truth_outside_emulator_box"] = int((~inside).sum())
        per["fraction_chi2_above_truth_truth_inside_box"] = float(np.mean(~reached[inside])) if inside.any() else None
        out[f"snr_{snr}"] = per
    return out


def fitter_comparison(throughput: dict, accuracy: dict) -> dict:
    """Fitter speed and the network / fitter throughput ratios."""
    fit = accuracy.get("fitter", {})
    if "spectra_per_second" not in fit:
        return {"measured": False, "reason": fit.get("reason") or accuracy.get("reason")}
    rate = fit["spectra_per_second"]
    return {"measured": True, "fitter_spectra_per_second": rate, "n_fits": fit["n_fits"],
            "note": "fitter: fit_spectra(fit_rv=False) on normalised flux, timed within the accuracy runs; "
                    "networks: end-to-end pipeline throughput from 'throughput'",
            "ratio_network_to_fitter": {k: throughput[k]["spectra_per_second"] / rate
                                        for k in ("astronn_mc100", "apogeenet_small_draws20") if k in throughput},
            "cannon_test_spectra_per_second": (accuracy.get("cannon") or {}).get("test_spectra_per_second"),
            "cannon_routed_test_spectra_per_second":
                (accuracy.get("cannon_routed") or {}).get("test_spectra_per_second")}


def bench_real(paths: dict, args) -> dict:
    """Both networks on every real APOGEE spectrum the registries hold: the two apStar files (``headers``: their
    Doppler-grid labels) and the two apVisit files, with the flags and OOD measures of each row."""
    spectra, headers = real_spectra()
    visits, visit_headers = real_visits()
    out = {"headers": headers + visit_headers, "trained": bool(args.astronn_weights and args.apogeenet_weights),
           "files": ["apstar-2M17335483", "apstar-2M19485057", *(h["file"] for h in visit_headers)]}
    for name, w in (("astronn", args.astronn_weights or paths["astronn"]),
                    ("apogeenet", args.apogeenet_weights or paths["apogeenet_small"])):
        rows = get_pipeline(name, weights=w).process(spectra + visits)
        out[name] = [{k: r.get(k) for k in REAL_ROW_FIELDS} for r in rows]
    if not out["trained"]:
        out["note"] = "randomly initialised networks: shows that both pipelines run on real apStar; values meaningless"
    return out


BRACKETT_LOWER_LEVEL = 4
RYDBERG_H_PER_ANGSTROM = 1.0967758e-3  # R_H in 1/Angstrom (vacuum)


def brackett_absorption(wavelength: np.ndarray, depth: float = 0.35, hwhm: float = 10.0) -> np.ndarray:
    """Multiplicative Brackett-series profile: Lorentzians at Br 11-21 (vacuum, Rydberg formula
    1/lambda = R_H (1/4^2 - 1/n^2)), each ``depth`` deep with half width ``hwhm`` Angstrom.

    A stand-in for the strong H I lines of an A star (about 9000 K), which the training grids (no
    hydrogen lines) and so the emulator lack; depth and width are round numbers of the size seen in A
    stars' H-band spectra, not a model atmosphere.
    """
    out = np.ones_like(wavelength, dtype=np.float64)
    for n in range(11, 22):
        centre = 1.0 / (RYDBERG_H_PER_ANGSTROM * (1.0 / BRACKETT_LOWER_LEVEL ** 2 - 1.0 / n ** 2))
        out *= 1.0 - depth / (1.0 + ((wavelength - centre) / hwhm) ** 2)
    return out


def ood_spectra(n_per_kind: int, seed: int = 0) -> tuple[list[Spectrum], list[str], dict]:
    """Bad and off-population apStar-like spectra, ``n_per_kind`` of each kind (see the ``how`` dict returned)."""
    from stellarnn.labels.emulator_ood import EmulatorOOD
    from stellarnn.labels.astronn.training import synthetic_observations
    from stellarnn.spectra import apogee_wavelength
    from stellarnn.synthesis.grid_builder import load_grid

    rng = np.random.default_rng(seed)
    wl = apogee_wavelength()
    npx = wl.size
    grid = load_grid(Path(__file__).resolve().parents[1] / "grids" / "apogee" / "test")
    real = read_apstar(fetch("apstar-2M19485057")).combined
    low = synthetic_observations(grid, 2.0, seed=seed + 2)  # S/N 2 at the continuum
    emulator = EmulatorOOD().model
    how = {"flat": "constant flux 1000, ivar for S/N 100, no noise",
           "zero": "all-zero flux, ivar 1",
           "noise_only": "flux 1000 + Gaussian noise at S/N 100 (honest ivar), no lines",
           "negative": "minus a real apStar spectrum (2M19485057), its ivar",
           "missing_chip": "a real apStar spectrum with one chip (blue, green, red in turn) at flux 0, ivar 0",
           "snr_2": "held-out PySME grid spectra (grids/apogee/test) with noise at S/N 2",
           "hot_9000K": "NOT a model atmosphere: the Payne emulator extrapolated to Teff 8800-9200 K (log g 4, "
                        "[M/H] 0, [X/M] 0) times Brackett 11-21 Lorentzians 0.35 deep, 10 A half width, S/N 100 "
                        "(PHOENIX phoenix-10kK covers 8038-12849 A only, not the H band)",
           "cool_3000K": "NOT a model atmosphere: the Payne emulator extrapolated to Teff 2800-3200 K, log g 0.5-1.5, "
                         "[M/H] -0.5..0.3 (M giants colder than the grid's 3500 K), S/N 100"}
    spectra, kinds = [], []

    def add(kind, flux, ivar):
        spectra.append(Spectrum(wl, flux, ivar))
        kinds.append(kind)

    ones = np.ones(npx)
    for i in range(n_per_kind):
        add("flat", 1000.0 * ones, ones / 10.0 ** 2)
        add("zero", 0.0 * ones, ones)
        add("noise_only", 1000.0 + 10.0 * rng.standard_normal(npx), ones / 10.0 ** 2)
        add("negative", -real.flux * (1 + 0.01 * i), real.ivar)
        chip = (slice(0, 3300), slice(3300, 6200), slice(6200, npx))[i % 3]
        f, iv = real.flux.copy(), real.ivar.copy()
        f[chip], iv[chip] = 0.0, 0.0
        add("missing_chip", f, iv)
        add("snr_2", low["flux"][i], low["ivar"][i])
    n_lab = emulator.label_min.numel()
    with torch.inference_mode():
        hot = np.zeros((n_per_kind, n_lab))
        hot[:, 0], hot[:, 1], hot[:, 3] = rng.uniform(8800, 9200, n_per_kind), 4.0, 2.0
        hot_flux = emulator(torch.as_tensor(hot, dtype=torch.float32)).double().numpy() * brackett_absorption(wl)
        cool = np.zeros((n_per_kind, n_lab))
        cool[:, 0], cool[:, 1] = rng.uniform(2800, 3200, n_per_kind), rng.uniform(0.5, 1.5, n_per_kind)
        cool[:, 2], cool[:, 3] = rng.uniform(-0.5, 0.3, n_per_kind), 2.0
        cool_flux = emulator(torch.as_tensor(cool, dtype=torch.float32)).double().numpy()
    for kind, flux in (("hot_9000K", hot_flux), ("cool_3000K", cool_flux)):
        for f in flux:
            add(kind, f + 0.01 * rng.standard_normal(npx), ones * 100.0 ** 2)
    return spectra, kinds, how


def bench_ood(args) -> dict:
    """Information / out-of-distribution flags of both shipped pipelines (issue 19 item 3, issue 20 item 10).

    * a set of bad and off-population spectra (:func:`ood_spectra`): every one should be flagged;
    * the held-out PySME grid ``--test-grid`` (default ``grids/apogee_like_f0/test``, the APOGEE-like
      population; never trained on) with noise at S/N 100: at most 2 % flagged, also per population;
    * throughput of each pipeline with the checks and OOD measures (the default) and without the
      emulator measures (``ood_emulator=False``), on ``--n-spectra`` of the held-out spectra.

    *Flagged* = ``flag_bad`` or any information / OOD bit (2^4-2^10, warn bits included); the
    networks' own range/uncertainty bits are reported separately (``flag_bad_fraction``).  The networks are those of
    ``--astronn-weights`` / ``--apogeenet-weights`` (before 0.5.29 this section always ran the shipped ones).
    """
    from stellarnn.labels.astronn.training import synthetic_observations
    from stellarnn.labels.emulator_ood import OOD_FLAG_BITS
    from stellarnn.labels.spectrum_information import INFORMATION_FLAG_BITS
    from stellarnn.spectra import apogee_wavelength
    from stellarnn.synthesis.grid_builder import load_grid

    bits = {**INFORMATION_FLAG_BITS, **OOD_FLAG_BITS}
    quality_mask = sum(bits.values())
    bad, kinds, how = ood_spectra(args.ood_per_kind)
    from stellarnn.synthesis.populations import population_of

    grid = load_grid(args.test_grid)
    obs = synthetic_observations(grid, 100.0, seed=100)
    names = list(obs["label_names"])
    population = population_of(*(obs["labels"][:, names.index(k)] for k in ("teff", "logg", "m_h")))
    wl = apogee_wavelength()
    held = [Spectrum(wl, f, iv) for f, iv in zip(obs["flux"], obs["ivar"])]
    grid_name = Path(args.test_grid).resolve().as_posix().split("/grids/")[-1]
    out = {"bad_set": {"n_spectra": len(bad), "kinds": how},
           "held_out": {"grid": f"grids/{grid_name}", "n_spectra": len(held), "snr": 100},
           "flagged_means": "flagged_fraction: flag_bad (the network's own bits included) or any information/OOD "
                            "bit (2^4-2^10) set; flagged_by_information_or_ood_fraction: an information/OOD bit set",
           "target": {"bad_flagged_fraction": 1.0, "held_out_flagged_fraction_max": 0.02,
                      "throughput_spectra_per_second_min": {"astronn_mc100": 50, "apogeenet_draws20": 20}}}

    def summary(rows):
        flags = np.array([int(r["result_flags"]) for r in rows])
        flagged = np.array([bool(r["flag_bad"]) or bool(int(r["result_flags"]) & quality_mask) for r in rows])
        return {"flagged_fraction": float(flagged.mean()),
                "flagged_by_information_or_ood_fraction": float(np.mean((flags & quality_mask) != 0)),
                "flag_bad_fraction": float(np.mean([bool(r["flag_bad"]) for r in rows])),
                "nan_teff_fraction": float(np.mean([not np.isfinite(r["teff"]) for r in rows])),
                "bit_counts": {name: int(np.sum((flags & bit) != 0)) for name, bit in bits.items()}}, flagged

    # the networks of --astronn-weights / --apogeenet-weights (the shipped ones by default); the OOD measures use the
    # shipped emulator ($STELLARNN_WEIGHTS_DIR, when set, names another weights folder)
    figure_data = {}
    for name, kwargs in (("astronn", {"mc_passes": 100, "weights": args.astronn_weights}),
                         ("apogeenet", {"n_draws": 20, "weights": args.apogeenet_weights})):
        p = get_pipeline(name, **kwargs)
        rows = p.process(bad)
        total, flagged = summary(rows)
        per_kind = {}
        for kind in how:
            sel = [i for i, k in enumerate(kinds) if k == kind]
            s, _ = summary([rows[i] for i in sel])
            s["predicted_teff_median"] = float(np.nanmedian([rows[i]["teff"] for i in sel])) \
                if np.isfinite([rows[i]["teff"] for i in sel]).any() else None
            s["ood_chi2_median"] = float(np.nanmedian([rows[i]["ood_chi2"] for i in sel])) \
                if np.isfinite([rows[i]["ood_chi2"] for i in sel]).any() else None
            per_kind[kind] = s
        out["bad_set"][name] = {**total, "by_kind": per_kind,
                                "unflagged": [kinds[i] for i in np.flatnonzero(~flagged)]}
        measures = {"bad": _ood_measures(rows, flagged, kinds)}
        rows = p.process(held)
        total, flagged = summary(rows)
        measures["held_out"] = _ood_measures(rows, flagged, ["held-out"] * len(rows))
        figure_data[name] = measures
        chi2 = np.array([r["ood_chi2"] for r in rows])
        total["ood_chi2_percentiles_50_90_98_max"] = [float(v) for v in np.nanpercentile(chi2, [50, 90, 98, 100])]
        total["flagged_true_labels"] = [{"teff": float(obs["labels"][i, 0]), "logg": float(obs["labels"][i, 1]),
                                         "m_h": float(obs["labels"][i, 2]), "population": str(population[i]),
                                         "result_flags": int(rows[i]["result_flags"])}
                                        for i in np.flatnonzero(flagged)]
        total["flagged_fraction_by_population"] = {
            str(pop): {"n": int((population == pop).sum()), "flagged_fraction": float(flagged[population == pop].mean())}
            for pop in dict.fromkeys(population)}
        out["held_out"][name] = total
        # throughput with and without the emulator measures (the information checks always run)
        sample = held[:args.n_spectra]
        p_without = get_pipeline(name, ood_emulator=False, **kwargs)
        timing = {}
        for label, pipe in (("with", p), ("without", p_without)):
            pipe.process(sample[:2])
            wall, cpu = [], []
            for _ in range(max(1, args.repeats)):
                c0, t0 = time.process_time(), time.perf_counter()
                pipe.process(sample)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            timing[label] = (float(np.median(wall)), float(np.median(cpu)))
        n = len(sample)
        out.setdefault("throughput", {})[name] = {
            "n_spectra": n, "passes_or_draws": next(iter(kwargs.values())),
            "spectra_per_second": n / timing["with"][0],
            "spectra_per_second_without_emulator_ood": n / timing["without"][0],
            "median_seconds": timing["with"][0], "median_seconds_without_emulator_ood": timing["without"][0],
            "median_cpu_seconds": timing["with"][1], "median_cpu_seconds_without_emulator_ood": timing["without"][1],
            "spectra_per_second_if_2_cores_were_free": 2 * n / timing["with"][1],
            "note": "wall clock on a machine shared with background jobs (load averages in 'machine'); "
                    "'if_2_cores_were_free' = 2 x spectra per CPU-second of this process (an estimate that "
                    "assumes both threads busy, as an unloaded 2-core run would keep them)"}
    figure = Path(args.out).with_suffix(".ood.png")
    plot_ood(figure_data, figure)
    out["figure"] = figure.name
    return out


def _ood_measures(rows: list[dict], flagged: np.ndarray, kinds: list[str]) -> dict:
    """The OOD measures of a batch of label rows, for :func:`plot_ood`."""
    return {"ood_chi2": np.array([r["ood_chi2"] for r in rows], dtype=float),
            "line_snr": np.array([r["line_snr"] for r in rows], dtype=float),
            "flagged": np.asarray(flagged, dtype=bool), "kind": np.asarray(kinds)}


def plot_ood(data: dict, path: Path) -> None:
    """One panel per network: ``ood_chi2`` against ``line_snr`` for the held-out grid (grey, flagged ones circled
    red) and each kind of the bad set (hollow where a kind's spectrum went unflagged), with the thresholds of
    :mod:`stellarnn.labels.emulator_ood`; kinds refused before the network (no measure) are listed in the panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stellarnn.labels.emulator_ood import CHI2_BAD, CHI2_WARN, LINE_SNR_MIN

    fig, axes = plt.subplots(1, len(data), figsize=(6.2 * len(data), 5.0), squeeze=False)
    markers = "osD^v<>ph*"
    colours = ("tab:green", "tab:purple", "tab:blue", "tab:orange", "tab:brown", "tab:olive", "tab:cyan", "tab:pink")
    for ax, (name, measures) in zip(axes[0], data.items()):
        held = measures["held_out"]
        ok = np.isfinite(held["ood_chi2"]) & np.isfinite(held["line_snr"])
        ax.scatter(held["line_snr"][ok], held["ood_chi2"][ok], s=6, c="0.6", lw=0,
                   label=f"held-out grid, S/N 100 ({held['flagged'].mean():.1%} flagged)")
        f = ok & held["flagged"]
        ax.scatter(held["line_snr"][f], held["ood_chi2"][f], s=40, facecolors="none", edgecolors="tab:red", lw=0.8,
                   label="held-out, flagged")
        bad = measures["bad"]
        refused, j, xmax = [], -1, np.nanmax(np.abs(held["line_snr"][ok]), initial=10.0)
        for kind in dict.fromkeys(bad["kind"].tolist()):
            sel = bad["kind"] == kind
            good = sel & np.isfinite(bad["ood_chi2"]) & np.isfinite(bad["line_snr"])
            if not good.any():
                refused.append(kind)
                continue
            j += 1
            colour = colours[j % len(colours)]
            xmax = max(xmax, float(np.max(bad["line_snr"][good])))
            for flag_state, face in ((True, colour), (False, "none")):
                m = good & (bad["flagged"] == flag_state)
                if m.any():
                    ax.scatter(np.clip(bad["line_snr"][m], -3, None), bad["ood_chi2"][m], s=28, marker=markers[j % 10],
                               facecolors=face, edgecolors=colour, lw=1.0,
                               label=f"{kind} ({int(bad['flagged'][sel].sum())}/{int(sel.sum())} flagged)"
                               if flag_state or not (good & bad["flagged"]).any() else None)
        ax.axhline(CHI2_WARN, color="k", ls="--", lw=0.8)
        ax.axhline(CHI2_BAD, color="k", lw=0.8)
        ax.axvline(LINE_SNR_MIN, color="k", ls=":", lw=0.8)
        ax.text(0.99, CHI2_WARN, " CHI2_WARN", va="bottom", ha="right", fontsize=7, transform=ax.get_yaxis_transform())
        ax.text(0.99, CHI2_BAD, " CHI2_BAD", va="bottom", ha="right", fontsize=7, transform=ax.get_yaxis_transform())
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(-30, 2.0 * xmax)
        ax.set_yscale("log")
        ax.set_xlabel("line_snr (matched filter of the emulator's line pattern)")
        ax.set_ylabel("ood_chi2 (reduced)")
        ax.set_title(name, fontsize=10)
        if refused:
            ax.text(0.3, 0.55, "no measure (refused before the network, flagged):\n" + ", ".join(refused),
                    transform=ax.transAxes, fontsize=7, va="bottom")
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle("Information / OOD measures: bench/labels.py ood section (label-box bits not shown)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


NO_GPU = {"present": False, "reason": "no CUDA device on this machine"}
GPU_LABELS = ("teff", "logg", "fe_h")


def _timed_rate(pipe, spectra, repeats: int, sync) -> dict:
    pipe.process(spectra[:2])
    sync()

    def call():
        pipe.process(spectra)
        sync()

    t = median_seconds(call, repeats)
    return {"n_spectra": len(spectra), "median_seconds": t, "spectra_per_second": len(spectra) / t}


def _agreement(gpu_rows: list[dict], cpu_rows: list[dict]) -> dict:
    """Max over spectra of |gpu - cpu| / e (the CPU row's uncertainty) per label."""
    out = {}
    for k in GPU_LABELS:
        g = np.array([r.get(k, np.nan) for r in gpu_rows], float)
        c = np.array([r.get(k, np.nan) for r in cpu_rows], float)
        e = np.array([r.get(f"e_{k}", np.nan) for r in cpu_rows], float)
        out[k] = float(np.nanmax(np.abs(g - c) / e)) if np.isfinite(e).any() else None
    return out


def bench_gpu(args) -> dict:
    """The ``gpu`` key: GPU name, pipeline throughput on it, agreement with the CPU (or why there is none)."""
    if not torch.cuda.is_available():
        return dict(NO_GPU)
    device = torch.device(args.device)

    def sync():
        torch.cuda.synchronize(device)

    spectra = test_batch(args.gpu_n_spectra)
    extra = {"astronn": {**({} if args.astronn_max_rows is None else {"max_rows": args.astronn_max_rows}),
                         **({} if args.astronn_chunk_rows is None else {"chunk_rows": args.astronn_chunk_rows}),
                         "precision": args.precision},
             "apogeenet": {**({} if args.apogeenet_chunk_size is None else {"chunk_size": args.apogeenet_chunk_size}),
                           "precision": args.precision}}
    out = {"present": True, "device": str(device), "name": torch.cuda.get_device_name(device),
           "torch": torch.__version__, "cuda": torch.version.cuda, "repeats": args.repeats,
           "pipeline_options": extra, "throughput": {}, "agreement_with_cpu_max_delta_over_e": {}}
    n_check = min(8, len(spectra))
    for key, name, kw in (("astronn_mc100", "astronn", {"mc_passes": 100}),
                          ("apogeenet_small_draws20", "apogeenet", {"n_draws": 20})):
        pipe = get_pipeline(name, device=str(device), **kw, **extra[name])
        out["throughput"][key] = {**_timed_rate(pipe, spectra, args.repeats, sync), "weights": "shipped"}
        cpu = get_pipeline(name, device="cpu", **kw)
        out["agreement_with_cpu_max_delta_over_e"][key] = _agreement(pipe.process(spectra[:n_check]),
                                                                    cpu.process(spectra[:n_check]))
        del pipe, cpu
    with tempfile.TemporaryDirectory(prefix="labels_bench_gpu") as tmp:
        full = random_weights(Path(tmp))["apogeenet_full"]
        pipe = get_pipeline("apogeenet", weights=full, device=str(device), n_draws=20, **extra["apogeenet"])
        out["throughput"]["apogeenet_full_draws20"] = {**_timed_rate(pipe, spectra, args.repeats, sync),
                                                       "weights": "random (full configuration)",
                                                       "parameters": count_parameters(pipe.model)}
    out["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-spectra", type=int, default=32)
    ap.add_argument("--n-full", type=int, default=2, help="spectra for the full-size APOGEENet timing")
    shipped = {name: ROOT / "weights" / name / f"{name}.pt" for name in ("astronn", "apogeenet")}
    ap.add_argument("--astronn-weights", default=str(shipped["astronn"]) if shipped["astronn"].is_file() else None,
                    help="AstroNN checkpoint (default: the shipped weights/astronn/astronn.pt)")
    ap.add_argument("--apogeenet-weights",
                    default=str(shipped["apogeenet"]) if shipped["apogeenet"].is_file() else None,
                    help="APOGEENet checkpoint (default: the shipped weights/apogeenet/apogeenet.pt)")
    default_test = ROOT / "grids" / "apogee_like_f0" / "test"
    ap.add_argument("--test-grid", default=str(default_test) if (default_test / "spec.json").is_file() else None,
                    help="held-out PySME grid of the accuracy section (default: grids/apogee_like_f0/test)")
    ap.add_argument("--cannon-train-grid", action="append",
                    help="training grid of the Cannon (repeatable; default: grids/apogee_like_f0/train once it holds "
                         f">= {CANNON_MIN_TRAIN} spectra, else grids/apogee/train, train2, train3)")
    ap.add_argument("--cannon-regularization", type=float, default=0.0,
                    help="ridge on the Cannon's non-constant coefficients (relative to the design's second moments)")
    ap.add_argument("--cannon-save", help="also write the trained Cannon to this checkpoint path (and the routed "
                                          "Cannon to <stem>_routed.pt beside it)")
    ap.add_argument("--cannon-routing", choices=("labels", "likelihood"), default="labels",
                    help="routing of the routed Cannon: regions around the global Cannon's labels (default) or all "
                         "regions, the lowest -2 ln L wins either way")
    ap.add_argument("--no-cannon", action="store_true", help="skip the Cannon in the accuracy section")
    ap.add_argument("--emulator-weights", default=str(Path(__file__).resolve().parents[1] / "weights" / "emulator"
                                                      / "payne_apogee.pt"),
                    help="Payne emulator for the least-squares fitter comparison (skipped if missing)")
    ap.add_argument("--n-test", type=int, default=0, help="use only the first N held-out spectra (0: all)")
    ap.add_argument("--fitter-n", type=int, default=0,
                    help="fit only the first N of them with the (slow) fitter at each S/N (0: all)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "labels.json"))
    ap.add_argument("--only", choices=("all", "ood", "accuracy"), default="all",
                    help="'ood': run only the information / out-of-distribution section and update its key "
                         "('ood') in --out, keeping the other keys; 'accuracy': only the accuracy sections "
                         "('accuracy', 'fitter_on_emulator_spectra', 'least_squares_fitter'), likewise")
    ap.add_argument("--ood-per-kind", type=int, default=8, help="bad / off-population spectra per kind (8 kinds)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default: the CPU benchmark) or cuda / cuda:N: the GPU section only, key 'gpu' of --out")
    ap.add_argument("--gpu-n-spectra", type=int, default=4096, help="in-memory spectra of the GPU timing")
    ap.add_argument("--astronn-max-rows", type=int, default=None, help="AstroNN max_rows on the GPU (default: its own)")
    ap.add_argument("--astronn-chunk-rows", type=int, default=None,
                    help="AstroNN chunk_rows on the GPU (default: the device table's)")
    ap.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                    help="network precision of the GPU section (bf16: CUDA autocast)")
    ap.add_argument("--apogeenet-chunk-size", type=int, default=None,
                    help="APOGEENet chunk_size on the GPU (default: its own)")
    ap.add_argument("--report", action="store_true",
                    help="print the per-population markdown tables of the written --out file and exit (runs nothing)")
    args = ap.parse_args()
    if args.report:
        print(markdown_report(json.loads(Path(args.out).read_text())))
        return
    torch.set_num_threads(args.threads)
    if args.device != "cpu":
        if not args.device.startswith("cuda"):
            ap.error(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
        out = Path(args.out)
        result = json.loads(out.read_text()) if out.is_file() else {}
        result["gpu"] = bench_gpu(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=float))
        print(f"gpu: {json.dumps(result['gpu'], default=float)[:300]}\nwrote {out}")
        return
    if args.only == "ood":
        out = Path(args.out)
        result = json.loads(out.read_text()) if out.is_file() else {}
        load_start = os.getloadavg()
        section = bench_ood(args)
        section["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                              "torch": torch.__version__, "load_average_start": load_start,
                              "load_average_end": os.getloadavg()}
        result["ood"] = section
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=float))
        print(json.dumps({k: section[k] for k in ("throughput",)}, indent=1, default=float))
        for name in ("astronn", "apogeenet"):
            print(name, "bad flagged", section["bad_set"][name]["flagged_fraction"], "held-out flagged",
                  section["held_out"][name]["flagged_fraction"])
        return
    if args.only == "accuracy":
        out = Path(args.out)
        result = json.loads(out.read_text()) if out.is_file() else {}
        load_start = os.getloadavg()
        result["accuracy"] = bench_accuracy(args)
        result["accuracy"]["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                                         "torch_threads": args.threads, "torch": torch.__version__,
                                         "load_average_start": load_start, "load_average_end": os.getloadavg()}
        result["least_squares_fitter"] = fitter_comparison(result.get("throughput", {}), result["accuracy"])
        result["fitter_on_emulator_spectra"] = fitter_on_emulator_spectra(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=float))
        print(population_table(result["accuracy"]))
        print(f"wrote {out}")
        return
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                          "torch": torch.__version__, "load_average_start": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="labels_bench") as tmp:
        paths = random_weights(Path(tmp))
        paths.update({k: v for k, v in (("astronn", args.astronn_weights),) if v})
        if args.apogeenet_weights:
            paths["apogeenet_small"] = args.apogeenet_weights
        result["throughput"] = bench_throughput(paths, args.n_spectra, args.n_full, args.repeats)
        result["accuracy"] = bench_accuracy(args)
        result["least_squares_fitter"] = fitter_comparison(result["throughput"], result["accuracy"])
        result["fitter_on_emulator_spectra"] = fitter_on_emulator_spectra(args)
        result["real_apstar"] = bench_real(paths, args)
        result["ood"] = bench_ood(args)
    result["machine"]["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps(result["throughput"], indent=1, default=float))
    print(population_table(result["accuracy"]))


if __name__ == "__main__":
    main()
