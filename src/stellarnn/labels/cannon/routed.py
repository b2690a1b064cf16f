"""A routed ensemble of Cannons: one quadratic model per stellar population, the fair Cannon peer.

One quadratic in the labels over 3500-8000 K and log g 0-5 is too simple a model of H-band spectra
(its own model error is ~1.7 % rms on held-out noise-free spectra), so a network beating a single global
Cannon proves little.  Ness et al. 2015 (ApJ 808, 16, §3) trained the Cannon on a restricted label range
(red giants); the peer here does the same per population of :mod:`stellarnn.synthesis.populations`:

*Training*: one :class:`~stellarnn.labels.cannon.model.CannonModel` per population region, trained on the
training spectra inside the population's box expanded by :data:`REGION_MARGIN` (±250 K in Teff, ±0.3 dex
in log g, ±0.3 dex in [M/H]; edge stars and stars whose routed labels fall just outside a box are then
inside the model's training range).  A region needs ``n_train >= MIN_SPECTRA_PER_COEFFICIENT x P``
training spectra (P = 1 + D + D(D+1)/2 coefficients per pixel, 2P by default: fewer and the quadratic
interpolates rather than fits the data); where the expanded box holds fewer, the margins are widened
by the factors of :data:`MARGIN_WIDENING` in turn until it holds enough, and the whole training set is
used if no factor suffices (the region's model is then the global one refitted).  The factor used is
recorded in the training summary.  A global Cannon on all training spectra is kept for routing.

*Test step*: the routing does not use the truth.  The global Cannon labels the spectrum first; its
candidate regions are those whose box expanded by :data:`REGION_MARGIN` holds the global labels
(``routing="labels"``; a spectrum whose global labels lie in no expanded box takes the regions of the
first widening factor that holds them), or every region (``routing="likelihood"``).  Each candidate
region's model fits the spectrum (bounded to its training range) and the one with the lowest
−2 ln L = Σ_λ [ (f_λ − m_λ)² / (σ_λ² + s_λ²) + ln(σ_λ² + s_λ²) ] wins (Ness et al. 2015 eq. 3 at the
fitted labels; the ln term matters because the models' scatters s_λ² differ), over the pixels every
regional model uses.

The expanded boxes are evaluated through :func:`~stellarnn.synthesis.populations.population_masks`
itself (the single source of the edges): a star lies within margins m of a box iff some shift δ with
``|δ_k| <= m_k`` moves it into the box; the shifts tried are a grid of :data:`MARGIN_GRID_POINTS` per axis
(spacing m/4), which is exact for boxes at least a quarter margin wide on every axis (all populations
are, for every widening factor: the narrowest box, 1400 K, exceeds 8 x 250 K / 4).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import torch

from ...synthesis.populations import POPULATIONS, population_masks
from ...train import load_checkpoint, register_model, save_checkpoint
from .model import VARIANCE_FLOOR, CannonLabels, CannonModel, _noise_variance, n_coefficients

MODEL_KIND = "cannon_routed"
#: margins (Teff [K], log g [dex], [M/H] [dex]) by which a population's box is expanded for its training set
#: and for routing
REGION_MARGIN = (250.0, 0.3, 0.3)
#: a region's model needs at least this many training spectra per coefficient of a pixel
MIN_SPECTRA_PER_COEFFICIENT = 2.0
#: factors by which the margins are widened, in turn, for a region with too few training spectra
MARGIN_WIDENING = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
#: shifts per axis tried within the margins (spacing margin / 4, see the module docstring)
MARGIN_GRID_POINTS = 9
ROUTINGS = ("labels", "likelihood")


def region_masks(teff, logg, m_h, margin=REGION_MARGIN, regions=POPULATIONS) -> dict[str, np.ndarray]:
    """Membership of each star in each population's box expanded by ``margin`` (Teff, log g, [M/H]).

    Evaluated with :func:`population_masks` on shifted labels (module docstring); ``margin = (0, 0, 0)``
    gives the populations themselves.  Expanded regions overlap; NaN labels belong to none.
    """
    t, g, m = (np.asarray(v, dtype=float) for v in (teff, logg, m_h))
    steps = np.linspace(-1.0, 1.0, MARGIN_GRID_POINTS)
    out = {r: np.zeros(t.shape, dtype=bool) for r in regions}
    shifts = set(product(*[tuple(float(s) for s in steps * float(mk)) for mk in margin]))
    for dt, dg, dm in shifts:
        masks = population_masks(t + dt, g + dg, m + dm)
        for r in regions:
            out[r] |= masks[r]
    return out


@dataclass
class RoutedCannonLabels(CannonLabels):
    """Result of :meth:`RoutedCannon.predict_labels`: the winning region's fit, and the routing."""

    region: np.ndarray         #: (n,) str: the region whose model labelled the spectrum ("" if not fitted)
    n_candidates: np.ndarray   #: (n,) int: regional models fitted to the spectrum
    neg2_log_likelihood: np.ndarray  #: (n,) −2 ln L of the winning fit over the common pixels
    global_labels: CannonLabels      #: the global Cannon's fit, used for routing


@register_model(MODEL_KIND)
class RoutedCannon(torch.nn.Module):
    """A global Cannon plus one Cannon per population region (module docstring), all on the same labels.

    ``population_label_names`` names the model's labels that stand for Teff, log g and [M/H] (the bench's
    AstroNN labels use ``fe_h``, which the synthetic grids set equal to [M/H]).  Built untrained, as
    :func:`stellarnn.train.load_checkpoint` rebuilds it; :meth:`fit` returns a trained one.
    """

    def __init__(self, label_names, n_pixels: int, regions=POPULATIONS,
                 population_label_names=("teff", "logg", "m_h"), margin=REGION_MARGIN, routing: str = "labels"):
        super().__init__()
        self.label_names = [str(n) for n in label_names]
        self.n_pixels = int(n_pixels)
        self.regions = [str(r) for r in regions]
        unknown = [r for r in self.regions if r not in POPULATIONS]
        if unknown or not self.regions:
            raise ValueError(f"regions must be populations of {POPULATIONS}, got {self.regions}")
        self.population_label_names = [str(n) for n in population_label_names]
        missing = [n for n in self.population_label_names if n not in self.label_names]
        if len(self.population_label_names) != 3 or missing:
            raise ValueError(f"population labels (Teff, log g, [M/H]) {self.population_label_names} must be 3 of "
                             f"the labels {self.label_names}")
        self.margin = [float(m) for m in margin]
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
        self.routing = routing
        self.global_model = CannonModel(self.label_names, self.n_pixels)
        self.regional = torch.nn.ModuleDict({r: CannonModel(self.label_names, self.n_pixels) for r in self.regions})

    @property
    def hyperparameters(self) -> dict:
        return {"label_names": list(self.label_names), "n_pixels": self.n_pixels, "regions": list(self.regions),
                "population_label_names": list(self.population_label_names), "margin": list(self.margin),
                "routing": self.routing}

    def _masks(self, labels: np.ndarray, factor: float = 1.0) -> dict[str, np.ndarray]:
        cols = [self.label_names.index(n) for n in self.population_label_names]
        return region_masks(*(labels[:, c] for c in cols), margin=[factor * m for m in self.margin],
                            regions=self.regions)

    # ------------------------------------------------------------------ training step
    @classmethod
    def fit(cls, flux, ivar, labels, label_names, regions=POPULATIONS, population_label_names=("teff", "logg", "m_h"),
            margin=REGION_MARGIN, routing: str = "labels", regularization: float = 0.0,
            min_spectra_per_coefficient: float = MIN_SPECTRA_PER_COEFFICIENT,
            global_model: CannonModel | None = None) -> "RoutedCannon":
        """Train the global and the regional Cannons (:meth:`CannonModel.fit` for each).

        Parameters
        ----------
        flux, ivar, labels, label_names, regularization
            As for :meth:`CannonModel.fit` (``ivar=None``: noise-free).
        regions : sequence of str
            Populations with a model of their own (default all of :data:`POPULATIONS`).
        population_label_names : (str, str, str)
            The labels that stand for Teff, log g, [M/H].
        margin : (float, float, float)
            Expansion of each population's box (Teff, log g, [M/H]); default :data:`REGION_MARGIN`.
        routing : {"labels", "likelihood"}
            Default routing of :meth:`predict_labels` (module docstring).
        min_spectra_per_coefficient : float
            A region's training set is widened (:data:`MARGIN_WIDENING`) until it holds this many spectra per
            coefficient of a pixel.
        global_model : CannonModel, optional
            An already trained global Cannon on the same labels and pixels (saves training it again).
        """
        flux = np.asarray(flux, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        model = cls(label_names, flux.shape[1], regions, population_label_names, margin, routing)
        if global_model is None:
            global_model = CannonModel.fit(flux, ivar, labels, label_names, regularization=regularization)
        elif global_model.label_names != model.label_names or global_model.n_pixels != model.n_pixels:
            raise ValueError("the global model has other labels or pixels")
        model.global_model.load_state_dict(global_model.state_dict())
        p = n_coefficients(len(model.label_names))
        need = int(np.ceil(min_spectra_per_coefficient * p))
        summary = {"global": dict(getattr(global_model, "training_summary", {})), "regions": {},
                   "min_train_spectra": need, "margin": list(model.margin)}
        ivar_all = None if ivar is None else np.asarray(ivar, dtype=np.float64)
        for region in model.regions:
            factor, rows = None, None
            for f in MARGIN_WIDENING:
                rows = model._masks(labels, f)[region]
                if rows.sum() >= need:
                    factor = f
                    break
            if factor is None:
                rows = np.ones(len(labels), dtype=bool)
            sub = CannonModel.fit(flux[rows], None if ivar_all is None else ivar_all[rows], labels[rows],
                                  model.label_names, regularization=regularization)
            model.regional[region].load_state_dict(sub.state_dict())
            summary["regions"][region] = {**sub.training_summary, "margin_factor": factor,
                                          "whole_training_set": factor is None}
        model.training_summary = summary
        return model.eval()

    # ------------------------------------------------------------------ test step
    def candidates(self, global_labels: np.ndarray, routing: str | None = None) -> np.ndarray:
        """(n, R) bool: the regions whose models fit each spectrum, from the global Cannon's labels (n, D)."""
        routing = routing or self.routing
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
        fitted = np.isfinite(global_labels).all(1)
        if routing == "likelihood":
            return np.repeat(fitted[:, None], len(self.regions), axis=1)
        out = np.zeros((len(global_labels), len(self.regions)), dtype=bool)
        for f in MARGIN_WIDENING:
            todo = fitted & ~out.any(1)
            if not todo.any():
                break
            masks = self._masks(global_labels[todo], f)
            out[todo] = np.column_stack([masks[r] for r in self.regions])
        todo = fitted & ~out.any(1)
        out[todo] = True  # beyond every widened box: let the likelihood decide among all regions
        return out

    def predict_labels(self, flux, ivar, routing: str | None = None, global_labels: CannonLabels | None = None,
                       **kwargs) -> RoutedCannonLabels:
        """Labels of continuum-normalised spectra: the global Cannon routes, the regional Cannons refit.

        Parameters
        ----------
        flux, ivar : array (n, L)
            As for :meth:`CannonModel.predict_labels`.
        routing : {"labels", "likelihood"}, optional
            Overrides the model's routing (module docstring).
        global_labels : CannonLabels, optional
            The global model's fit of these spectra, if already computed (it is not recomputed).
        **kwargs
            Passed to every :meth:`CannonModel.predict_labels` (``n_iterations``, ``chunk_size``).
        """
        flux = np.asarray(flux, dtype=np.float64)
        glob = global_labels if global_labels is not None else self.global_model.predict_labels(flux, ivar, **kwargs)
        cand = self.candidates(glob.labels, routing)
        good, sigma2 = _noise_variance(flux, ivar)
        common = np.ones(self.n_pixels, dtype=bool)
        for m in self.regional.values():
            common &= np.isfinite(m.scatter_variance.double().numpy())
        n, d = flux.shape[0], len(self.label_names)
        best = np.full(n, np.inf)
        out = {"labels": np.full((n, d), np.nan), "label_errors": np.full((n, d), np.nan), "chi2": np.full(n, np.nan),
               "dof": np.zeros(n, dtype=int), "reduced_chi2": np.full(n, np.nan),
               "at_bound": np.zeros((n, d), dtype=bool), "fitted": np.zeros(n, dtype=bool)}
        region = np.full(n, "", dtype=object)
        for k, name in enumerate(self.regions):
            rows = np.flatnonzero(cand[:, k])
            if rows.size == 0:
                continue
            model = self.regional[name]
            res = model.predict_labels(flux[rows], None if ivar is None else np.asarray(ivar)[rows], **kwargs)
            var = np.maximum((sigma2 if sigma2.shape[0] == 1 else sigma2[rows])
                             + model.scatter_variance.double().numpy()[None], VARIANCE_FLOOR)
            use = good[rows] & common[None]
            resid2 = (np.where(use, flux[rows], 0.0) - np.nan_to_num(model.spectra(res.labels))) ** 2
            nll = np.where(use, resid2 / var + np.log(var), 0.0).sum(1)
            nll = np.where(res.fitted, nll, np.inf)
            take = nll < best[rows]
            sel = rows[take]
            best[sel] = nll[take]
            region[sel] = name
            for key in out:
                out[key][sel] = getattr(res, key)[take]
        return RoutedCannonLabels(**out, region=region.astype(str), n_candidates=cand.sum(1),
                                  neg2_log_likelihood=np.where(np.isfinite(best), best, np.nan), global_labels=glob)

    # ------------------------------------------------------------------ checkpoint
    def save(self, path, metrics: dict | None = None, provenance: dict | None = None) -> Path:
        """Write the ensemble in the project's checkpoint format (:func:`stellarnn.train.save_checkpoint`)."""
        summary = dict(getattr(self, "training_summary", {}))
        return save_checkpoint(path, self, MODEL_KIND, self.hyperparameters, metrics={**summary, **(metrics or {})},
                               provenance=provenance)

    @classmethod
    def load(cls, path, device: str = "cpu") -> "RoutedCannon":
        """An ensemble saved by :meth:`save` (``weights_only`` loading, weights strict)."""
        model, payload = load_checkpoint(path, expected_kind=MODEL_KIND, device=device)
        model.training_summary = dict(payload.get("metrics") or {})
        return model
