"""Out-of-distribution measures of a label row from the Payne emulator (both pipelines).

After a network has predicted labels, :class:`EmulatorOOD` asks whether the input looks like the
synthetic stars the network was trained on, batched over spectra (no per-spectrum loop):

* ``ood_chi2``: the reduced chi^2 of the emulator's spectrum (The Payne, Ting et al. 2019, ApJ 879, 69;
  ``weights/emulator/payne_apogee.pt``) at the predicted labels against the DR17 continuum-normalised
  input, over its good pixels: chi^2 / (n_good - 9), with a quadratic polynomial per chip multiplying
  the model and fitted by linear least squares (the DR17 pseudo-continuum differs from the synthetic
  flux / true continuum, as for The Payne on observed spectra; 9 = 3 chips x 3 coefficients).  Labels
  the network does not give are set to the grid's conventions: v_micro from the APOGEE relation
  (Holtzman et al. 2018, :func:`stellarnn.synthesis.label_priors.microturbulence_apogee`), [X/M] from
  AstroNN's [X/H] - [Fe/H], or 0 for APOGEENet.  The labels are clipped to the emulator's training box
  (the emulator is not extrapolated).  Pixel errors are the normalised errors, with a floor
  ``MODEL_ERROR_FLOOR`` (the emulator's own error: held-out median ``|dflux|`` 3e-4, larger for cool stars);
* ``line_snr``: the matched-filter S/N of the emulator's absorption pattern in the data,
  sum w t d / sqrt(sum w t^2) with t = 1 - model and d = 1 - flux (each minus its weighted mean per
  chip) and w = 1 / max(error, noise)^2 (``noise``: the flux-difference noise of
  :mod:`.spectrum_information`, so that an error array that lies cannot create a detection).
  Pure noise gives N(0, 1); a star whose lines are where the model puts them gives sqrt(sum w t^2);
* with ``brackett_mask=True`` the H I Brackett cores of :mod:`stellarnn.spectra.brackett_mask` (at the
  predicted Teff) count as bad pixels in both ``ood_chi2`` and ``line_snr``: neither LTE code
  reproduces them in cool stars (``bench/results/brackett.json``), so they must not make a real star
  look out of distribution.  Off by default (``BRACKETT_MASK_DEFAULT``), as for the shipped networks;
* ``ood_label_distance``: how far the predicted Teff, log g, [Fe/H] lie outside the emulator's
  (= the training grids') label box by more than half their own uncertainties
  (``LABEL_ERROR_ALLOWANCE`` x e_teff, ...), sqrt(sum_k (excess_k / scale_k)^2) with scales 250 K, 0.5 dex,
  0.25 dex (``LABEL_DISTANCE_SCALES``); 0 inside the box.

Bits set from them (the same values in both pipelines' ``result_flags``; their ``flags`` modules
document them as well):

=====  ===========================  ============================================================
bit    name                         set when
=====  ===========================  ============================================================
2^6    flag_featureless             ``line_snr`` < 5 (``LINE_SNR_MIN``): no stellar absorption
                                    pattern detected (noise-only spectra) -- bad
2^7    flag_ood_chi2                ``ood_chi2`` > ``CHI2_WARN`` (warn)
2^8    flag_ood_chi2_bad            ``ood_chi2`` > ``CHI2_BAD`` (bad): the spectrum is not one
                                    of the training population (another kind of star, artefacts)
2^9    flag_outside_training        ``ood_label_distance`` > 0: labels outside the training box (warn)
2^10   flag_far_outside_training    ``ood_label_distance`` > 1 (bad), e.g. Teff < 3250 K or > 8250 K
=====  ===========================  ============================================================
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..spectra import APOGEE_CHIP_SLICES, apogee_wavelength, kept_pixel_index
from ..spectra.brackett_mask import BRACKETT_MASK_DEFAULT, brackett_mask as brackett_pixels
from .spectrum_information import FLAG_FEATURELESS, InformationReport

FLAG_OOD_CHI2 = 1 << 7
FLAG_OOD_CHI2_BAD = 1 << 8
FLAG_OUTSIDE_TRAINING = 1 << 9
FLAG_FAR_OUTSIDE_TRAINING = 1 << 10
OOD_FLAG_BITS = {"flag_ood_chi2": FLAG_OOD_CHI2, "flag_ood_chi2_bad": FLAG_OOD_CHI2_BAD,
                 "flag_outside_training": FLAG_OUTSIDE_TRAINING, "flag_far_outside_training": FLAG_FAR_OUTSIDE_TRAINING}
#: bits that make a row bad (featureless comes from :mod:`.spectrum_information`)
OOD_BAD_FLAGS = FLAG_FEATURELESS | FLAG_OOD_CHI2_BAD | FLAG_FAR_OUTSIDE_TRAINING
OOD_WARN_FLAGS = FLAG_OOD_CHI2 | FLAG_OUTSIDE_TRAINING

LINE_SNR_MIN = 5.0
CHI2_WARN = 25.0
CHI2_BAD = 100.0
MODEL_ERROR_FLOOR = 0.003
LABEL_DISTANCE_SCALES = {"teff": 250.0, "logg": 0.5, "fe_h": 0.25}
#: the fraction of a label's own 1-sigma uncertainty that an excess outside the box is forgiven.  With 1.0 (before
#: 0.5.30) AstroNN's 3426 +- 92 K for a 2800-3200 K M giant (74 K below the box) went unflagged; with 0.5 the
#: bench's bad set is all flagged and the held-out flagged fractions hardly move (AstroNN 0.33 %, APOGEENet
#: 1.17 -> 1.33 %, one m_dwarf; one-off on the staged v4 networks, stop 46).  A warn bit only.
LABEL_ERROR_ALLOWANCE = 0.5
#: the training grids' label box (:class:`stellarnn.synthesis.label_priors.LabelPrior`), used without an emulator
TRAINING_BOX = {"teff": (3500.0, 8000.0), "logg": (0.0, 5.0), "fe_h": (-2.5, 0.5)}
POLY_DEGREE = 2
#: damped Gauss-Newton (chord) steps over the labels a network does not give (APOGEENet's [X/M], v_micro); the
#: steps after the first only for spectra whose reduced chi^2 is still above ``PROFILE_REFINE_CHI2``.  One step
#: (before 0.5.30) left 5 of the 100 held-out m_dwarfs above CHI2_WARN with APOGEENet's labels; five left 1, eight
#: none, at the same median chi^2 (one-off on the staged v4 networks, stop 46).
PROFILE_ITERATIONS = 8
PROFILE_REFINE_CHI2 = 2.0
PROFILE_DAMPING = 1e-2
#: a profiled spectrum stops once an accepted step lowers its chi^2 by less than this fraction (converged; a spectrum
#: whose chi^2 stays above PROFILE_REFINE_CHI2 by model mismatch, as real stars' 16-77, no longer takes every step)
PROFILE_TOLERANCE = 1e-3


def default_emulator_path() -> Path:
    """The shipped emulator checkpoint named by ``weights/emulator/manifest.json``.

    Looked up in ``$STELLARNN_WEIGHTS_DIR`` first (when set), then in the repository's ``weights/``
    (a weights folder holding only the networks still gets the shipped emulator).
    """
    import os

    from .pipeline import WEIGHTS_ENV, resolve_shipped_weights

    try:
        return resolve_shipped_weights("emulator")
    except FileNotFoundError:
        if not os.environ.get(WEIGHTS_ENV):
            raise
    saved = os.environ.pop(WEIGHTS_ENV)
    try:
        return resolve_shipped_weights("emulator")
    finally:
        os.environ[WEIGHTS_ENV] = saved


def _chip_basis(n_kept_per_chip, degree: int) -> torch.Tensor:
    """(n_chips * (degree+1), 7514) polynomial basis in the chip's pixel index mapped to [-1, 1], zero elsewhere."""
    total = sum(n_kept_per_chip)
    rows, start = [], 0
    for n in n_kept_per_chip:
        x = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
        for k in range(degree + 1):
            r = torch.zeros(total, dtype=torch.float64)
            r[start:start + n] = x ** k
            rows.append(r)
        start += n
    return torch.stack(rows)


class EmulatorOOD:
    """OOD measures from the emulator (module docstring).

    Parameters
    ----------
    path : path, optional
        A ``payne-emulator`` checkpoint (default: the shipped one).
    brackett_mask : bool
        Leave the Brackett cores (:mod:`stellarnn.spectra.brackett_mask`, at the predicted Teff) out of
        ``ood_chi2`` and ``line_snr``.
    """

    def __init__(self, path=None, brackett_mask: bool = BRACKETT_MASK_DEFAULT):
        from ..synthesis.emulator import load_emulator
        from ..synthesis.grid_builder import LABEL_NAMES

        self.path = Path(path) if path is not None else default_emulator_path()
        model, payload = load_emulator(self.path)
        self.model = model.float().eval()
        names = (payload.get("provenance") or {}).get("label_names") or list(LABEL_NAMES)
        if len(names) != self.model.label_min.numel():
            raise ValueError(f"{self.path}: {len(names)} label names for {self.model.label_min.numel()} labels")
        self.label_names = list(names)
        self.box_min = self.model.label_min.double().numpy()
        self.box_max = self.model.label_max.double().numpy()
        self.kept = torch.as_tensor(kept_pixel_index())
        self.brackett_mask = bool(brackett_mask)
        self.kept_wavelength = apogee_wavelength()[kept_pixel_index()]
        self.chip_sizes = [s.stop - s.start for s in APOGEE_CHIP_SLICES]
        self.basis = _chip_basis(self.chip_sizes, POLY_DEGREE)
        self.basis_products = (self.basis[:, None, :] * self.basis[None, :, :]).flatten(0, 1)  # (81, 7514)

    def grid_labels(self, teff, logg, fe_h, x_h: dict | None = None) -> np.ndarray:
        """Emulator labels (B, n_labels) from predicted Teff, log g, [Fe/H] and optional AstroNN [X/H] columns.

        NaN labels become the box centre; every label is clipped to the box.
        """
        from ..synthesis.label_priors import microturbulence_apogee

        teff, logg, fe_h = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (teff, logg, fe_h))
        out = np.zeros((teff.size, len(self.label_names)))
        for j, name in enumerate(self.label_names):
            if name == "teff":
                v = teff
            elif name == "logg":
                v = logg
            elif name == "m_h":
                v = fe_h
            elif name == "v_micro":
                v = microturbulence_apogee(np.clip(np.nan_to_num(logg, nan=2.5), 0.0, 5.0))
            elif name.endswith("_m") and x_h is not None and f"{name[:-2]}_h" in x_h:
                v = np.asarray(x_h[f"{name[:-2]}_h"], dtype=np.float64).reshape(-1) - fe_h
            else:
                v = np.zeros(teff.size)
            centre = 0.5 * (self.box_min[j] + self.box_max[j])
            out[:, j] = np.clip(np.where(np.isfinite(v), v, centre), self.box_min[j], self.box_max[j])
        return out

    def label_distance(self, teff, logg, fe_h, errors: dict | None = None) -> np.ndarray:
        """:func:`label_distance` in this emulator's label box."""
        col = {n: i for i, n in enumerate(self.label_names)}
        box = {k: (self.box_min[col[g]], self.box_max[col[g]]) for k, g in (("teff", "teff"), ("logg", "logg"),
                                                                              ("fe_h", "m_h"))}
        return label_distance(teff, logg, fe_h, box, errors)

    def _continuum_fit(self, model: torch.Tensor, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The per-chip polynomial P (B, 7514) minimising sum w (f - P model)^2 (linear least squares)."""
        k = self.basis.shape[0]
        ata = ((w * model * model) @ self.basis_products.T).view(-1, k, k)  # sum_n w m^2 b_k b_l
        aty = (w * model * f) @ self.basis.T
        scale = ata.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)
        eye = torch.eye(k, dtype=torch.float64)
        coef = torch.linalg.solve(ata / scale[:, None, None] + 1e-12 * eye, (aty / scale[:, None]).unsqueeze(-1))
        return coef.squeeze(-1) @ self.basis

    def _jacobian(self, scaled: torch.Tensor, free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """d(model flux on the kept pixels) / d(scaled labels ``free``), (B, 7514, F), by forward-mode
        differentiation through the MLP (Linear, LeakyReLU and SiLU layers) in float32, and the model flux on the
        kept pixels (B, 7514) of the same pass.  The tangents travel as (B, F, width) rows, so that each layer is
        one matrix product over all spectra and labels."""
        x = scaled.to(torch.float32)
        tangent = None
        layers = list(self.model.flux_net)
        for layer in layers:
            if isinstance(layer, torch.nn.Linear):
                if tangent is None:
                    tangent = layer.weight[:, free].T.expand(x.shape[0], -1, -1)  # (B, F, out)
                else:
                    tangent = torch.nn.functional.linear(tangent, layer.weight)
                x = layer(x)
            elif isinstance(layer, torch.nn.LeakyReLU):
                tangent = tangent * torch.where(x > 0, 1.0, layer.negative_slope)[:, None, :]
                x = layer(x)
            elif isinstance(layer, torch.nn.SiLU):  # d/dx x s(x) = s(x) (1 + x (1 - s(x))), s the logistic
                sig = torch.sigmoid(x)
                tangent = tangent * (sig * (1 + x * (1 - sig)))[:, None, :]
                x = x * sig
            else:
                raise TypeError(f"emulator layer {type(layer).__name__} has no Jacobian rule here")
        flux = self.model.flux_mean + x  # PayneEmulator.forward_scaled
        return tangent[:, :, self.kept].transpose(1, 2).to(torch.float64), flux[:, self.kept].to(torch.float64)

    def _model_kept(self, scaled: torch.Tensor) -> torch.Tensor:
        return self.model.forward_scaled(scaled.to(torch.float32)).to(torch.float64)[:, self.kept]

    @torch.inference_mode()
    def measure(self, grid_labels: np.ndarray, info: InformationReport, rows=None, profile=()) -> dict:
        """``ood_chi2`` and ``line_snr`` (numpy (B,)) for emulator labels and the spectra's information report.

        Parameters
        ----------
        grid_labels : (B, n_labels)
            Emulator labels (:meth:`grid_labels`).
        info : InformationReport
            Of the spectra (normalised flux, good pixels, noise).
        rows : int array, optional
            The spectra of ``info`` that ``grid_labels`` belong to (default: all).
        profile : sequence of str
            Emulator labels the network does not predict (e.g. APOGEENet's v_micro and [X/M]):
            profiled by up to ``PROFILE_ITERATIONS`` damped Gauss-Newton steps with the Jacobian of the
            start (batched, labels inside the box; the steps after the first only for spectra whose reduced
            chi^2 is still above ``PROFILE_REFINE_CHI2``) from ``grid_labels`` before the chi^2, the predicted
            labels staying fixed.
        """
        idx = slice(None) if rows is None else torch.as_tensor(np.asarray(rows, dtype=np.int64))
        scaled = self.model.scale(torch.as_tensor(np.asarray(grid_labels), dtype=torch.float32)).to(torch.float64)
        flux = info.continuum.flux[idx]
        good = info.normalised_good[idx]
        if self.brackett_mask:  # the Brackett cores at the predicted Teff are not evidence either way
            teff = np.asarray(grid_labels, dtype=np.float64)[:, self.label_names.index("teff")]
            good = good & ~torch.as_tensor(brackett_pixels(self.kept_wavelength, teff))
        err = info.continuum.error[idx]
        sigma = torch.sqrt(err ** 2 + MODEL_ERROR_FLOOR ** 2)
        w = torch.where(good, sigma.clamp_min(1e-300) ** -2, 0.0)
        f = torch.where(good, flux, 0.0)
        free = [self.label_names.index(n) for n in profile if n in self.label_names]
        if free:
            free_t = torch.as_tensor(free)
            J, start = self._jacobian(scaled, free_t)  # (B, 7514, F), kept for every step (chord steps)
        else:
            start = self._model_kept(scaled)
        model = torch.where(good, start, 0.0)
        poly = self._continuum_fit(model, f, w)
        chi2 = (w * (f - poly * model) ** 2).sum(dim=1)
        n_par = self.basis.shape[0] + len(free)
        n_good = good.sum(dim=1)
        dof = (n_good - n_par).clamp_min(1)
        if free:
            damping = torch.full((scaled.shape[0],), PROFILE_DAMPING, dtype=torch.float64)
            active = torch.ones(scaled.shape[0], dtype=torch.bool)
            for it in range(PROFILE_ITERATIONS):
                # after the first step only the spectra the model still misses (reduced chi^2 > PROFILE_REFINE_CHI2)
                # and whose chi^2 still falls (no accepted step yet gaining less than PROFILE_TOLERANCE of it; a
                # rejected step raises the damping).  A stop on the linearised prediction of the next step as well
                # (chord steps: the Jacobian of the start) left 2-3 more of the 600 held-out spectra above CHI2_WARN
                # with APOGEENet's labels, at 1e-3 and at 1e-5 of chi^2 (bench/labels.py --only ood, stop 47)
                if it > 0:
                    active &= chi2 / dof > PROFILE_REFINE_CHI2
                sel = torch.nonzero(active).squeeze(1)
                if sel.numel() == 0:
                    break
                g, ws, fs, p, m = good[sel], w[sel], f[sel], poly[sel], model[sel]
                Jp = torch.where(g[:, :, None], J[sel] * p[:, :, None], 0.0)
                jtj = torch.einsum("bnf,bn,bng->bfg", Jp, ws, Jp)
                jtr = torch.einsum("bnf,bn,bn->bf", Jp, ws, fs - p * m)
                diag = jtj.diagonal(dim1=1, dim2=2).clamp_min(1e-12)
                step = torch.linalg.solve(jtj + torch.diag_embed(damping[sel, None] * diag),
                                          jtr.unsqueeze(-1)).squeeze(-1)
                trial = scaled[sel].clone()
                trial[:, free_t] = (trial[:, free_t] + step).clamp(-0.5, 0.5)
                t_model = torch.where(g, self._model_kept(trial), 0.0)
                t_poly = self._continuum_fit(t_model, fs, ws)
                t_chi2 = (ws * (fs - t_poly * t_model) ** 2).sum(dim=1)
                better = t_chi2 < chi2[sel]
                keep = sel[better]
                damping[sel[~better]] *= 10.0  # a rejected step: a shorter one next time
                active[keep[t_chi2[better] > (1.0 - PROFILE_TOLERANCE) * chi2[keep]]] = False  # converged
                scaled[keep], model[keep], poly[keep], chi2[keep] = (trial[better], t_model[better], t_poly[better],
                                                                     t_chi2[better])
        red = torch.where(n_good > n_par, chi2 / dof, torch.inf)
        # matched filter of the model's absorption pattern
        noise = torch.as_tensor(np.asarray(info.noise, dtype=np.float64))[idx]
        we = torch.where(good, torch.fmax(err, noise[:, None]).clamp_min(1e-300) ** -2, 0.0)
        t = torch.where(good, 1.0 - model, 0.0)
        d = torch.where(good, 1.0 - flux, 0.0)
        chip = self.basis[::POLY_DEGREE + 1]  # (3, 7514) chip indicators
        wsum = we @ chip.T  # (B, 3)
        t_mean = ((we * t) @ chip.T) / wsum.clamp_min(1e-300)
        d_mean = ((we * d) @ chip.T) / wsum.clamp_min(1e-300)
        t = torch.where(good, t - t_mean @ chip, 0.0)
        d = torch.where(good, d - d_mean @ chip, 0.0)
        num = (we * t * d).sum(dim=1)
        den = torch.sqrt((we * t * t).sum(dim=1))
        line_snr = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))
        return {"ood_chi2": torch.nan_to_num(red, nan=np.inf).numpy(), "line_snr": torch.nan_to_num(line_snr).numpy()}

    def flags(self, ood_chi2, line_snr, distance) -> np.ndarray:
        """:func:`ood_flags`."""
        return ood_flags(ood_chi2, line_snr, distance)


def label_distance(teff, logg, fe_h, box: dict | None = None, errors: dict | None = None) -> np.ndarray:
    """Distance of (Teff, log g, [Fe/H]) outside the training box in units of LABEL_DISTANCE_SCALES.

    sqrt(sum_k (excess_k / scale_k)^2), 0 inside the box, inf for a non-finite label.  ``box``: label ->
    (min, max), default :data:`TRAINING_BOX`.  ``errors`` (label -> array of 1-sigma uncertainties,
    optional): each excess is reduced by ``LABEL_ERROR_ALLOWANCE`` times the label's own uncertainty first,
    so a star at the edge of the grid whose label scatters just outside it is not flagged, while one outside by
    more than half its error is.
    """
    box = box or TRAINING_BOX
    total = 0.0
    for key, v in (("teff", teff), ("logg", logg), ("fe_h", fe_h)):
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        lo, hi = box[key]
        err = np.zeros_like(v) if not errors or errors.get(key) is None else \
            LABEL_ERROR_ALLOWANCE * np.nan_to_num(np.asarray(errors[key], dtype=np.float64).reshape(-1),
                                                  nan=0.0, posinf=0.0).clip(0)
        with np.errstate(invalid="ignore"):
            excess = np.maximum(np.maximum(lo - v, v - hi) - err, 0.0)
        total = total + (np.where(np.isfinite(v), excess, np.inf) / LABEL_DISTANCE_SCALES[key]) ** 2
    return np.sqrt(total)


def ood_flags(ood_chi2, line_snr, distance) -> np.ndarray:
    """The OOD bits (int64) from ``ood_chi2``, ``line_snr`` and the label distance (module docstring).

    A NaN chi^2 (not computed) sets no chi^2 bit; a NaN line S/N sets flag_featureless.
    """
    chi2, snr, dist = (np.asarray(a, dtype=np.float64) for a in (ood_chi2, line_snr, distance))
    out = np.zeros(chi2.shape, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        out |= np.where(~(snr >= LINE_SNR_MIN), FLAG_FEATURELESS, 0)
        out |= np.where(chi2 > CHI2_WARN, FLAG_OOD_CHI2, 0)
        out |= np.where(chi2 > CHI2_BAD, FLAG_OOD_CHI2_BAD, 0)
        out |= np.where(dist > 0, FLAG_OUTSIDE_TRAINING, 0)
        out |= np.where(~(dist <= 1.0), FLAG_FAR_OUTSIDE_TRAINING, 0)
    return out
