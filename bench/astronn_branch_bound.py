"""How well can AstroNN's censored element branches measure abundances at all?  A bound per population.

AstroNN (ApogeeBCNNCensored, Leung & Bovy 2019) feeds each element's branch only the pixels of its ASPCAP window
(:mod:`stellarnn.labels.astronn.element_windows`), concatenated with the trunk's Teff, log g and [Fe/H] (and two
auxiliary units).  The per-star Cramér-Rao bound of ``bench/crlb.py`` uses the whole spectrum; this bench asks what
is left for a branch.  For held-out stars of each population (the staged or shipped Payne emulator as the model,
S/N ``--snr``, σ = 1/S/N per pixel, the 7514 pixels the pipelines keep, RV and continuum known: the network's input
is rest-frame and normalised) it writes the median over stars of three bounds on [X/M]:

* ``full``: the whole spectrum, every label free (Fisher F = Jᵀ W J; bound sqrt((F⁻¹)_XX));
* ``full_with_prior``: the same plus the training population's prior on every label except Teff, log g, [M/H];
* ``branch_with_prior``: only X's window pixels, the trunk's Teff, log g, [M/H] known as well as the whole
  spectrum (with the prior) determines them (their marginal covariance), and the prior on every other label;
  ``branch_with_prior_x_h`` the same on [X/H] = [X/M] + [M/H], the label AstroNN reports (issue 19's targets);
  ``branch_with_prior_and_two_aux_x_h``: as if the branch's two auxiliary inputs also passed the two other labels
  (``two_aux_labels``, the best pair for that element) as well as the whole spectrum gives them.

The prior is Bayesian information in the van Trees sense (van Trees 1968, Detection, Estimation and Modulation
Theory I, eq. 2.288; Kay 1993, Fundamentals of Statistical Signal Processing I, ch. 10): J_prior = 1/s² per label,
s the robust scatter (1.4826 MAD) of the label about a quadratic trend in Teff, log g, [M/H] among the
population's training stars (``--train-grid``): what a network can know of a label from the trunk's three labels
and the training distribution alone.  A Gaussian is the distribution of least Fisher information for its variance,
so J_prior = 1/s² is an approximation, not a strict bound; the per-star bound at the star's labels stands in for
the prior average of the Fisher information.  A branch whose window bound with the prior is near the prior's own
scatter cannot measure that element beyond the trend it learns from [Fe/H].

Run: ``.venv/bin/python bench/astronn_branch_bound.py [--emulator PATH] [--n 60] [--snr 100]``
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stellarnn.labels.astronn.element_windows import BRANCH_ELEMENTS, element_window_indices
from stellarnn.labels.astronn.training import robust_scatter
from stellarnn.spectra import kept_pixel_index
from stellarnn.synthesis.emulator import load_emulator
from stellarnn.synthesis.grid_builder import BROADENING_LABELS, LABEL_NAMES, load_grid
from stellarnn.synthesis.information import model_jacobian
from stellarnn.synthesis.populations import POPULATIONS, population_masks

REPO = Path(__file__).resolve().parents[1]
#: elements with an AstroNN abundance target in issue 19 (giants: all; dwarfs: Mg, Si, Ca, Ni)
ELEMENTS = ("C", "N", "O", "Mg", "Al", "Si", "Ca", "Mn", "Ni")
TRUNK = ("teff", "logg", "m_h")


def trend_design(labels: np.ndarray, trunk: list[int]) -> np.ndarray:
    """Quadratic polynomial basis (10 columns) in the standardised trunk labels."""
    x = labels[:, trunk]
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    cols = [np.ones(len(x))] + [x[:, i] for i in range(3)] + [x[:, i] * x[:, j] for i in range(3) for j in range(i, 3)]
    return np.stack(cols, axis=1)


def prior_scatter(labels: np.ndarray, trunk: list[int], floor: float = 1e-3) -> np.ndarray:
    """Robust scatter of every non-trunk label about its quadratic trend in the trunk labels (0 for the trunk's)."""
    design = trend_design(labels, trunk)
    out = np.zeros(labels.shape[1])
    for i in range(labels.shape[1]):
        if i not in trunk:
            coef = np.linalg.lstsq(design, labels[:, i], rcond=None)[0]
            out[i] = max(float(robust_scatter(labels[:, i] - design @ coef)), floor)
    return out


def branch_bounds(jac: np.ndarray, snr: float, prior_sd: np.ndarray, trunk: list[int], windows: dict,
                  columns: dict, m_h: int) -> dict:
    """Per-star bounds (n_stars,) on each element's label: ``full``, ``full_with_prior``, ``branch_with_prior``, and
    ``branch_with_prior_x_h`` on [X/H] = [X/M] + [M/H] (the label AstroNN reports), from the same covariance."""
    w = snr ** 2
    fisher = w * np.einsum("npa,npb->nab", jac, jac)
    inv_var = np.zeros_like(prior_sd)
    inv_var[prior_sd > 0] = prior_sd[prior_sd > 0] ** -2.0
    prior = np.diag(inv_var)[None]
    cov = np.linalg.inv(fisher + prior)
    trunk_info = np.zeros_like(fisher)
    ix = np.ix_(trunk, trunk)
    trunk_info[:, ix[0], ix[1]] = np.linalg.inv(cov[:, trunk][:, :, trunk])
    full = np.linalg.pinv(fisher, hermitian=True)
    out = {}
    for element, k in columns.items():
        jw = jac[:, windows[element], :]
        branch = np.linalg.inv(w * np.einsum("npa,npb->nab", jw, jw) + trunk_info + prior)
        x_h = branch[:, k, k] + branch[:, m_h, m_h] + 2 * branch[:, k, m_h]
        out[element] = {"full": np.sqrt(np.clip(full[:, k, k], 0, None)), "full_with_prior": np.sqrt(cov[:, k, k]),
                        "branch_with_prior": np.sqrt(branch[:, k, k]), "branch_with_prior_x_h": np.sqrt(x_h)}
        # the two auxiliary units could pass two more of the trunk's quantities: the best pair of other labels
        best = None
        others = [i for i in range(jac.shape[2]) if i not in trunk and i != k]
        for a in range(len(others)):
            for b in range(a + 1, len(others)):
                known = list(trunk) + [others[a], others[b]]
                info = np.zeros_like(fisher)
                ixk = np.ix_(known, known)
                info[:, ixk[0], ixk[1]] = np.linalg.inv(cov[:, known][:, :, known])
                c = np.linalg.inv(w * np.einsum("npa,npb->nab", jw, jw) + info + prior)
                value = np.sqrt(c[:, k, k] + c[:, m_h, m_h] + 2 * c[:, k, m_h])
                if best is None or np.median(value) < np.median(best[0]):
                    best = (value, (others[a], others[b]))
        out[element]["branch_with_prior_and_two_aux_x_h"] = best[0]
        out[element]["two_aux_labels"] = best[1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", default=str(REPO / "weights" / "emulator" / "payne_apogee.pt"))
    ap.add_argument("--test-grid", default=str(REPO / "grids" / "apogee_like_f0" / "test"))
    ap.add_argument("--train-grid", default=str(REPO / "grids" / "apogee_like_f0" / "train"))
    ap.add_argument("--n", type=int, default=60, help="held-out stars per population (the first ones)")
    ap.add_argument("--snr", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "astronn_branch_bound.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    emulator, _ = load_emulator(args.emulator)
    emulator = emulator.float().eval()
    n_lab = emulator.label_min.numel()
    names = list((LABEL_NAMES + BROADENING_LABELS)[:n_lab])
    test, train = load_grid(args.test_grid), load_grid(args.train_grid)
    for g, where in ((test, args.test_grid), (train, args.train_grid)):
        if list(g["label_names"])[:n_lab] != names:
            raise SystemExit(f"{where}: labels {list(g['label_names'])} are not the emulator's {names}")
    trunk = [names.index(k) for k in TRUNK]
    windows = dict(zip(BRANCH_ELEMENTS, element_window_indices()))
    columns = {e: names.index(e.lower() + "_m") for e in ELEMENTS}
    lo, hi = emulator.label_min.numpy(), emulator.label_max.numpy()
    test_labels = np.asarray(test["labels"], dtype=np.float64)[:, :n_lab]
    train_labels = np.asarray(train["labels"], dtype=np.float64)[:, :n_lab]
    test_masks = population_masks(*(test_labels[:, i] for i in trunk))
    train_masks = population_masks(*(train_labels[:, i] for i in trunk))
    result = {}
    for pop in POPULATIONS:
        idx = np.flatnonzero(test_masks[pop])[:args.n]
        if not len(idx) or train_masks[pop].sum() < 50:
            result[pop] = {"n": int(len(idx)), "measured": False}
            continue
        prior_sd = prior_scatter(train_labels[train_masks[pop]], trunk)
        _, jac = model_jacobian(emulator, np.clip(test_labels[idx], lo, hi), kept_pixel_index(), rv=False)
        bounds = branch_bounds(jac, args.snr, prior_sd, trunk, windows, columns, names.index("m_h"))
        result[pop] = {"n": int(len(idx)), "n_train_for_prior": int(train_masks[pop].sum()),
                       **{e: {"window_pixels": int(len(windows[e])), "prior_scatter": float(prior_sd[columns[e]]),
                              **{k: float(np.median(v)) for k, v in bounds[e].items() if k != "two_aux_labels"},
                              "two_aux_labels": [names[i] for i in bounds[e]["two_aux_labels"]]} for e in ELEMENTS}}
        print(f"{pop:18s} [X/M] prior / full / full+prior / branch+prior; [X/H] branch+prior: " + "; ".join(
            f"{e} {result[pop][e]['prior_scatter']:.3f}/{result[pop][e]['full']:.3f}/"
            f"{result[pop][e]['full_with_prior']:.3f}/{result[pop][e]['branch_with_prior']:.3f};"
            f"{result[pop][e]['branch_with_prior_x_h']:.3f}" for e in ELEMENTS), flush=True)
        print(f"{'':18s} [X/H] branch+prior with the best two labels known through aux: " + "; ".join(
            f"{e} {result[pop][e]['branch_with_prior_and_two_aux_x_h']:.3f} ({','.join(result[pop][e]['two_aux_labels'])})"
            for e in ELEMENTS), flush=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "astronn_branch_bound", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "emulator": args.emulator,
        "test_grid": args.test_grid, "train_grid": args.train_grid, "snr": args.snr, "n_per_population": args.n,
        "measure": "median over the held-out stars of 1-sigma bounds on [X/M] (dex): full = whole-spectrum CRLB, every "
                   "label free; full_with_prior = plus the training prior (van Trees, Gaussian) on the non-trunk "
                   "labels; branch_with_prior = only X's ASPCAP window, the trunk's Teff, log g, [M/H] as the whole "
                   "spectrum gives them, and the prior; branch_with_prior_x_h: the same on [X/H]; "
                   "branch_with_prior_and_two_aux_x_h: with the best two other labels also known; prior_scatter = the label's robust scatter about its "
                   "quadratic trend in Teff, log g, [M/H] among the population's training stars",
        "seconds": time.perf_counter() - t0, "by_population": result}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
