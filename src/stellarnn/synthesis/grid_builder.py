"""Resumable, chunked builder of synthetic APOGEE spectrum grids (PySME + APOGEE LSF).

Layout of a grid folder::

    spec.json                 what was built and how (labels prior, seed, line lists, LSF, versions)
    pending/000123.npz        one finished spectrum, written atomically by the worker that made it
    chunks/chunk_0002.h5      packed spectra [k*chunk_size, (k+1)*chunk_size) once all are done

Labels of spectrum ``i`` depend only on (seed, i) (:func:`sample_labels`), so a grid can be
extended or resumed in any order: a rerun skips every index found in ``chunks/`` or ``pending/``,
and an interrupted build loses at most the spectra being computed at that moment.

Stored per spectrum: the labels, the normalised flux on the 8575 apStar pixels (float16), the
continuum every ``CONTINUUM_STEP`` pixels relative to its median (float16) and that median
(float32, SME units erg/s/cm^2/A/sr), status and compute time.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic_files import atomic_write
from .label_priors import (ASTRONN_ELEMENTS, ApogeeLikePrior, LabelPrior, matches_population, prior_from_json,
                           wanted_population)
from .pysme_driver import StellarLabels

CONTINUUM_STEP = 10
LABEL_NAMES = ("teff", "logg", "m_h", "v_micro") + tuple(f"{e.lower()}_m" for e in ASTRONN_ELEMENTS)
#: labels stored after :data:`LABEL_NAMES` by grids with ``broadening_labels`` (the apogee-like grids)
BROADENING_LABELS = ("v_macro", "v_sini")


@dataclass
class GridSpec:
    """What a grid is: its size and seed and the physics every spectrum shares.

    The defaults are the current physics (APOGEE-like prior, H I lines, v_macro and v sin i as labels,
    transfer on a fixed R = 300,000 grid).  Fields missing from an older ``spec.json`` take the values
    those grids were built with (:meth:`from_json`).
    """

    name: str
    n: int
    seed: int
    chunk_size: int = 50
    prior: LabelPrior | ApogeeLikePrior = field(default_factory=ApogeeLikePrior)
    wmin: float = 15090.0
    wmax: float = 17010.0
    resolution: float = 3e5
    lsf_entry: str = "apvisit-5095-55844-128"
    line_lists: tuple[str, ...] = ("moog-atoms", "moog-co", "moog-cn", "moog-hydrides", "moog-h2o", "moog-feh",
                                   "moog-c2")
    #: compute the H I (Brackett) lines; grids whose spec.json lacks the field were built without them
    hydrogen_lines: bool = True
    #: store v_macro and v_sini after LABEL_NAMES (and synthesise with them)
    broadening_labels: bool = True
    #: fixed transfer grid lambda / d lambda for PySME (None: SME's adaptive grid, as the first grids)
    transfer_resolution: float | None = 3e5
    #: ATLAS9 [M/H] slices left out of the atmosphere interpolation: the [M/H] = 0 decks have VTURB = 0
    #: while all others have 2 km/s, and differ from their neighbours by ~1 % in T (``atmosphere audit``)
    atmosphere_excluded_m_h: tuple = (0.0,)
    #: the ATLAS9 [M/H] family the atmospheres are interpolated in (None: every slice).  The grid interleaves two
    #: families whose adjacent slices differ by ~1 % in T (``stellarnn.atmospheres.grid.atlas9_m_h_families``):
    #: across both, a solar-type dwarf's T(tau = 1) jumps by ~100 K between [M/H] = +0.1 and +0.2.  Family 0 (the
    #: 72-layer decks, [M/H] = -2.5 ... +0.5) covers the labels' whole [M/H] range.
    atmosphere_m_h_family: int | None = 0

    #: values of fields that a spec.json written before the field existed was built with
    LEGACY = {"hydrogen_lines": False, "broadening_labels": False, "transfer_resolution": None,
              "atmosphere_excluded_m_h": (), "atmosphere_m_h_family": None}

    def atmosphere_slices_left_out(self) -> list[float]:
        """[M/H] slices of the ATLAS9 grid the atmosphere interpolation does not use (excluded or of the other family)."""
        drop = {float(v) for v in self.atmosphere_excluded_m_h}
        if self.atmosphere_m_h_family is not None:
            from ..atmospheres.grid import atlas9_m_h_families

            feh, family = atlas9_m_h_families()
            if self.atmosphere_m_h_family not in set(family.tolist()):
                raise ValueError(f"atmosphere_m_h_family must be one of {sorted(set(family.tolist()))}, "
                                 f"got {self.atmosphere_m_h_family!r}")
            drop |= {float(v) for v in feh[family != self.atmosphere_m_h_family]}
        return sorted(drop)

    def atmospheres(self):
        """The ATLAS9 grid this grid's spectra are synthesised from (the slices it leaves out removed)."""
        from ..atmospheres import AtmosphereGrid

        return AtmosphereGrid.load_atlas9().without_slices("m_h", self.atmosphere_slices_left_out())

    @property
    def label_names(self) -> tuple[str, ...]:
        return LABEL_NAMES + (BROADENING_LABELS if self.broadening_labels else ())

    def to_json(self) -> dict:
        d = asdict(self)
        d["prior"] = self.prior.to_json()
        d["line_lists"] = list(self.line_lists)
        d["atmosphere_excluded_m_h"] = [float(v) for v in self.atmosphere_excluded_m_h]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "GridSpec":
        d = {**cls.LEGACY, **dict(d)}
        d["prior"] = prior_from_json(d["prior"])
        d["line_lists"] = tuple(d["line_lists"])
        d["atmosphere_excluded_m_h"] = tuple(float(v) for v in d["atmosphere_excluded_m_h"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def sample_labels(index: int, seed: int, prior=None, atmospheres=None, max_tries: int = 5000) -> StellarLabels:
    """Labels of grid spectrum ``index``: deterministic in (seed, index).

    Candidates come from ``prior.draw`` (:mod:`~stellarnn.synthesis.label_priors`: the uniform box by
    default, or the APOGEE-like population) and are kept when plausible (no hot low-gravity corner), inside
    the prior's box, in the population the index is conditioned on (stratified priors) and, when
    ``atmospheres`` is given, when the atmosphere grid can interpolate them.
    """
    prior = prior or LabelPrior()
    rng = np.random.default_rng([seed, index])
    population = wanted_population(prior, index)
    for _ in range(max_tries):
        star = prior.draw(rng)
        if not prior.plausible(star["teff"], star["logg"]):
            continue
        if hasattr(prior, "in_box") and not prior.in_box(star):
            continue
        if not matches_population(star, population):
            continue
        if atmospheres is not None:
            try:
                atmospheres.interpolate_linear(teff=star["teff"], logg=star["logg"], m_h=star["m_h"])
            except Exception:  # OutOfGridError or a hole: draw again
                continue
        return StellarLabels(float(star["teff"]), float(star["logg"]), float(star["m_h"]), float(star["v_micro"]),
                             star["x_m"], float(star["v_macro"]), float(star["v_sini"]))
    raise RuntimeError(f"no plausible in-grid labels after {max_tries} draws (seed {seed}, index {index}"
                       + (f", population {population}" if population else "") + ")")


# ---------------------------------------------------------------- worker side
_WORKER: dict = {}


def _init_worker(spec_json: dict, out_dir: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .linelists import load_line_list
    from .pysme_driver import ApogeeInstrument, PySMESynthesizer

    spec = GridSpec.from_json(spec_json)
    lines = load_line_list(spec.wmin, spec.wmax, spec.line_lists)
    atmospheres = spec.atmospheres()
    synth = PySMESynthesizer(spec.wmin, spec.wmax, lines, atmospheres=atmospheres, resolution=spec.resolution,
                             hydrogen_lines=spec.hydrogen_lines, transfer_resolution=spec.transfer_resolution)
    _WORKER.update(spec=spec, synth=synth, instrument=ApogeeInstrument(synth.wave, spec.lsf_entry),
                   atmospheres=atmospheres, out=Path(out_dir))


def _atomic_savez(path: Path, **arrays) -> None:
    with atomic_write(path, suffix=".part.npz") as tmp:
        np.savez(tmp, **arrays)


def compute_one(index: int) -> tuple[int, str]:
    """Synthesise spectrum ``index`` in a worker and write ``pending/<index>.npz``."""
    spec, synth, inst = _WORKER["spec"], _WORKER["synth"], _WORKER["instrument"]
    t0 = time.perf_counter()
    labels = sample_labels(index, spec.seed, spec.prior, _WORKER["atmospheres"])
    if not spec.broadening_labels:  # grids without the labels were synthesised without the broadening
        labels.v_macro = labels.v_sini = 0.0
    lab = labels.as_dict()
    label_vec = np.array([lab[k] for k in spec.label_names], dtype=np.float64)
    try:
        flux, cont = synth.synthesize(labels)
        flux_a = inst.apply(flux)
        cont_a = inst.apply(cont)
        median = float(np.nanmedian(cont_a))
        status, reason = "ok", ""
    except Exception as exc:  # keep going: the failure is recorded with its reason
        flux_a = np.full(8575, np.nan)
        cont_a = np.full(8575, np.nan)
        median, status, reason = float("nan"), "failed", f"{type(exc).__name__}: {exc}"[:500]
    seconds = time.perf_counter() - t0
    _atomic_savez(_WORKER["out"] / "pending" / f"{index:06d}.npz", index=index, labels=label_vec,
                  flux=flux_a.astype(np.float16), continuum=(cont_a[::CONTINUUM_STEP] / median).astype(np.float16),
                  continuum_median=np.float32(median), status=status, reason=reason, seconds=seconds)
    return index, status


# ---------------------------------------------------------------- parent side
def _chunk_path(out: Path, k: int) -> Path:
    return out / "chunks" / f"chunk_{k:04d}.h5"


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checksum_path(chunk: Path) -> Path:
    return chunk.with_name(chunk.name + ".sha256")


def corrupt_chunks(out) -> list[Path]:
    """Chunk files whose sha256 differs from the one written beside them when they were packed
    (a truncated or altered file).  Chunks packed before checksums existed have none and are not checked."""
    bad = []
    for p in sorted((Path(out) / "chunks").glob("chunk_*.h5")):
        c = _checksum_path(p)
        if c.exists() and c.read_text().split()[0] != _sha256(p):
            bad.append(p)
    return bad


def done_indices(out: Path) -> set[int]:
    import h5py

    done: set[int] = set()
    for p in sorted((out / "chunks").glob("chunk_*.h5")):
        with h5py.File(p, "r") as h:
            done.update(int(i) for i in h["index"][:])
    for p in (out / "pending").glob("*.npz"):
        if not p.name.endswith(".part.npz"):
            done.add(int(p.stem))
    return done


def pack_chunks(out: Path, spec: GridSpec) -> list[Path]:
    """Pack every complete chunk of pending spectra into an HDF5 chunk file (atomic), then drop the pending files."""
    import h5py

    written = []
    n_chunks = -(-spec.n // spec.chunk_size)
    for k in range(n_chunks):
        path = _chunk_path(out, k)
        if path.exists():
            continue
        idx = range(k * spec.chunk_size, min((k + 1) * spec.chunk_size, spec.n))
        files = [out / "pending" / f"{i:06d}.npz" for i in idx]
        if not all(f.exists() for f in files):
            continue
        recs = [np.load(f) for f in files]
        with atomic_write(path) as tmp, h5py.File(tmp, "w") as h:
            h.attrs["label_names"] = json.dumps(list(spec.label_names))
            h.attrs["continuum_step"] = CONTINUUM_STEP
            h.create_dataset("index", data=np.array([int(r["index"]) for r in recs]))
            h.create_dataset("labels", data=np.stack([r["labels"] for r in recs]))
            h.create_dataset("flux", data=np.stack([r["flux"] for r in recs]), compression="gzip", shuffle=True)
            h.create_dataset("continuum", data=np.stack([r["continuum"] for r in recs]), compression="gzip",
                             shuffle=True)
            h.create_dataset("continuum_median", data=np.array([r["continuum_median"] for r in recs]))
            h.create_dataset("status", data=np.array([str(r["status"]) for r in recs], dtype="S8"))
            h.create_dataset("reason", data=np.array([str(r["reason"]) for r in recs], dtype="S500"))
            h.create_dataset("seconds", data=np.array([float(r["seconds"]) for r in recs]))
        _checksum_path(path).write_text(f"{_sha256(path)}  {path.name}\n")
        for f in files:
            f.unlink()
        written.append(path)
    return written


def provenance() -> dict:
    import importlib.metadata as md

    from ..data import get_entry

    return {"pysme-astro": md.version("pysme-astro"), "stellarnn": md.version("stellarnn"),
            "atlas9": get_entry("atlas9-grid").sha256}


def build_grid(out: str | Path, spec: GridSpec, processes: int = 1, progress: bool = True,
               max_spectra: int | None = None) -> dict:
    """Build (or resume) a grid; returns counts.  ``max_spectra`` limits this call's new spectra."""
    out = Path(out)
    (out / "pending").mkdir(parents=True, exist_ok=True)
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    prov = provenance()
    first, resumed = prov, []
    if spec_file.exists():
        previous = json.loads(spec_file.read_text())
        existing = GridSpec.from_json(previous["spec"])
        if {k: v for k, v in existing.to_json().items() if k != "n"} != \
                {k: v for k, v in spec.to_json().items() if k != "n"}:
            raise ValueError(f"{out} holds a grid built with a different specification; use another folder")
        spec = GridSpec.from_json({**existing.to_json(), "n": max(spec.n, existing.n)})
        # a resumed build keeps the versions it started with; other versions that added spectra are listed
        resumed = list(previous.get("resumed_with", []))
        first = previous.get("provenance", prov)
    for stale in (out / "pending").glob("*.part.npz"):
        stale.unlink()
    for bad in corrupt_chunks(out):  # truncated or altered: its spectra are computed again
        import warnings

        warnings.warn(f"{bad} does not match its sha256; it is set aside as {bad.name}.corrupt and rebuilt")
        os.replace(bad, bad.with_name(bad.name + ".corrupt"))
        _checksum_path(bad).unlink()
    pack_chunks(out, spec)
    done = done_indices(out)  # once: it opens every chunk file
    todo = [i for i in range(spec.n) if i not in done]
    if max_spectra is not None:
        todo = todo[:max_spectra]
    counts = {"requested": spec.n, "todo": len(todo), "ok": 0, "failed": 0}
    if todo and prov != first and prov not in resumed:  # only a version that adds spectra is listed
        resumed.append(prov)
    # atomic: a build killed at a session's end must not leave a truncated spec.json behind
    with atomic_write(spec_file) as tmp:
        Path(tmp).write_text(json.dumps({"spec": spec.to_json(), "label_names": list(spec.label_names),
                                         "provenance": first, **({"resumed_with": resumed} if resumed else {})},
                                        indent=2))
    if todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"grid {spec.name}", unit="spectrum", disable=not progress)
        if processes <= 1:
            _init_worker(spec.to_json(), str(out))
            results = map(compute_one, todo)
            pool = None
        else:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(processes, initializer=_init_worker,
                                                 initargs=(spec.to_json(), str(out)))
            results = pool.imap_unordered(compute_one, todo)
        try:
            for n_done, (_, status) in enumerate(results, 1):
                counts[status] = counts.get(status, 0) + 1
                bar.update()
                if n_done % spec.chunk_size == 0:
                    pack_chunks(out, spec)
        finally:
            if pool is not None:
                pool.terminate()
            bar.close()
    pack_chunks(out, spec)
    return counts


#: GridSpec fields that may differ between grids that are concatenated by :func:`load_grid`
_PER_GRID_FIELDS = ("name", "n", "seed")


def grid_rows(data: dict, rows) -> dict:
    """The spectra ``rows`` of a grid dictionary from :func:`load_grid` (an index array, a boolean mask or a slice):
    every per-spectrum array is indexed, everything else (``label_names``) is kept as it is."""
    n = len(data["index"])
    return {k: (v[rows] if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n else v) for k, v in data.items()}


def label_columns(data: dict, names) -> np.ndarray:
    """The labels ``names`` (in that order) of a grid dictionary from :func:`load_grid`, (n, len(names)) float64.

    A broadening label (:data:`BROADENING_LABELS`) that the grid does not carry is 0: grids built without them were
    synthesised without macroturbulence and rotation (:func:`compute_one`).  Any other missing label is an error.
    """
    have = list(data["label_names"])
    labels = np.asarray(data["labels"], dtype=np.float64)
    cols = []
    for name in names:
        if name in have:
            cols.append(labels[:, have.index(name)])
        elif name in BROADENING_LABELS:
            cols.append(np.zeros(len(labels)))
        else:
            raise KeyError(f"the grid has no label {name!r} (it has {', '.join(have)})")
    return np.column_stack(cols) if cols else np.zeros((len(labels), 0))


def load_grid(out, ok_only: bool = True) -> dict:
    """All packed and pending spectra of a grid: index, labels (n, n_labels), flux (n, 8575) float32, ...

    ``out`` is a grid folder or a sequence of folders.  Several folders are concatenated in the order
    given, after checking that their ``spec.json`` agree in everything but name, size and seed
    (same label prior, wavelength range, resolution, LSF and line lists); ``index`` then stays each
    spectrum's index within its own grid and ``grid`` (n,) says which folder (0, 1, ...) it came from.
    """
    if not isinstance(out, (str, Path)):
        folders = [Path(o) for o in out]
        if not folders:
            raise ValueError("load_grid needs at least one grid folder")
        if len(folders) == 1:
            return load_grid(folders[0], ok_only)
        specs = []
        for f in folders:
            spec_file = f / "spec.json"
            if not spec_file.exists():
                raise FileNotFoundError(f"{f} has no spec.json: not a grid folder")
            d = json.loads(spec_file.read_text())["spec"]
            d = {**GridSpec.LEGACY, **d}  # as GridSpec.from_json reads specs older than a field
            specs.append({k: v for k, v in d.items() if k not in _PER_GRID_FIELDS})
        for f, s in zip(folders[1:], specs[1:]):
            if s != specs[0]:
                diff = sorted(k for k in set(s) | set(specs[0]) if s.get(k) != specs[0].get(k))
                raise ValueError(f"grid {f} was built with another specification than {folders[0]} "
                                 f"(differs in {', '.join(diff)}); it cannot be concatenated")
        parts = [load_grid(f, ok_only) for f in folders]
        data = {k: np.concatenate([d[k] for d in parts]) for k in parts[0] if k != "label_names"}
        data["grid"] = np.concatenate([np.full(len(d["index"]), i, dtype=np.int16) for i, d in enumerate(parts)])
        data["label_names"] = parts[0]["label_names"]
        return data
    import h5py

    out = Path(out)
    bad = corrupt_chunks(out)
    if bad:
        raise ValueError(f"{', '.join(map(str, bad))}: chunk file does not match its sha256 (truncated or altered); "
                         f"`stellarnn grid build` on {out} with the same settings sets it aside and rebuilds it")
    parts = {k: [] for k in ("index", "labels", "flux", "continuum", "continuum_median", "status")}
    for p in sorted((out / "chunks").glob("chunk_*.h5")):
        with h5py.File(p, "r") as h:
            for k in parts:
                parts[k].append(h[k][:])
    pend = sorted(q for q in (out / "pending").glob("*.npz") if not q.name.endswith(".part.npz"))
    for q in pend:
        r = np.load(q)
        for k in parts:
            v = r[k]
            parts[k].append(np.array([v]) if v.ndim == 0 else v[None])
    if not parts["index"]:
        raise FileNotFoundError(f"{out} holds no synthesised spectra yet")
    data = {k: np.concatenate(v) for k, v in parts.items()}
    data["status"] = np.array([s.decode() if isinstance(s, bytes) else str(s) for s in data["status"]])
    order = np.argsort(data["index"])
    data = {k: v[order] for k, v in data.items()}
    if ok_only:
        keep = data["status"] == "ok"
        data = {k: v[keep] for k, v in data.items()}
    data["flux"] = data["flux"].astype(np.float32)
    declared = grid_label_names(out)
    if declared is not None and data["labels"].shape[1] != len(declared):
        raise ValueError(f"{out}: spectra carry {data['labels'].shape[1]} labels, spec.json names {len(declared)}")
    data["label_names"] = declared if declared is not None else list(LABEL_NAMES)
    return data


def grid_label_names(out) -> list[str] | None:
    """Names of the label columns a grid folder's ``spec.json`` declares (None when it declares none)."""
    spec_file = Path(out) / "spec.json"
    if not spec_file.exists():
        return None
    d = json.loads(spec_file.read_text())
    if "label_names" in d:
        return list(d["label_names"])
    if "prior" in d.get("spec", {}):
        return list(GridSpec.from_json(d["spec"]).label_names)
    return None


def grid_prior(out):
    """The label prior a grid folder was built with (from its ``spec.json``; None, i.e. the uniform box, without
    one)."""
    spec_file = Path(out) / "spec.json"
    if not spec_file.is_file():
        return None
    return GridSpec.from_json(json.loads(spec_file.read_text())["spec"]).prior
