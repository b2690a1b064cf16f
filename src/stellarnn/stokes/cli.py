"""``stellarnn stokes synth|invert|train|build-set|plot``: ME synthesis, inversions, training, the Lightweaver set, map plots."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ..cli_arguments import (check_output_file, check_output_folder, output_file, output_folder, plot_file,
                             positive_float, positive_int)
from ..figures import save_figure
from .milne_eddington import PARAMETER_NAMES, PARAMETER_UNITS, MilneEddington, add_noise
from .stratified_cnn import ROUTE_THRESHOLD_GAUSS

from ..data.shipped_weights import weights_dir

DEFAULT_WEIGHTS = weights_dir("stokes") / "me_cnn.pt"  # the checkout's, or the installed copy
DEFAULT_STRATIFIED_WEIGHTS = DEFAULT_WEIGHTS.with_name("stratified_cnn.pt")
#: ``stokes invert --method stratified`` without --weights: the field-loss network, and the strong-field specialist
#: for the profiles it finds above ROUTE_THRESHOLD_GAUSS (:class:`stellarnn.stokes.stratified_cnn.RoutedStratifiedInverter`)
DEFAULT_FIELD_WEIGHTS = DEFAULT_WEIGHTS.with_name("stratified_cnn_field.pt")
DEFAULT_STRONG_WEIGHTS = DEFAULT_WEIGHTS.with_name("stratified_cnn_strong.pt")
DEFAULT_STRATIFIED_SET = DEFAULT_WEIGHTS.with_name("stratified_set")
UNITS = dict(zip(PARAMETER_NAMES, PARAMETER_UNITS))


def smooth_random_maps(nx: int, ny: int, seed: int, scale_px: float = 4.0) -> np.ndarray:
    """Spatially smooth random ME parameter maps (nx, ny, 9) inside the training prior.

    Each parameter is a Gaussian-filtered white-noise field (σ = ``scale_px``) mapped through
    the normal CDF to [0, 1] and then onto the prior range (log-uniform for η0).
    """
    from scipy.ndimage import gaussian_filter
    from scipy.special import ndtr

    from .me_cnn import PRIOR

    if nx < 1 or ny < 1:
        raise ValueError("map size must be at least 1 × 1")
    rng = np.random.default_rng(seed)
    out = np.empty((nx, ny, len(PARAMETER_NAMES)))
    for k, name in enumerate(PARAMETER_NAMES):
        field = gaussian_filter(rng.standard_normal((nx, ny)), scale_px, mode="wrap")
        # standardised about its own mean: a map smaller than the filter scale is nearly constant, and
        # dividing that constant by its tiny spread would push every pixel to one end of the prior
        field = ndtr((field - field.mean()) / max(field.std(), 1e-12))
        lo, hi = PRIOR[name]
        if name == "eta0":
            out[..., k] = lo * (hi / lo) ** field
        else:
            out[..., k] = lo + (hi - lo) * field
    return out


def cmd_synth(args) -> int:
    from .hinode_io import write_parameter_maps, write_sp_level1
    from .plotting import plot_stokes_profiles

    me = MilneEddington()
    gen = torch.Generator().manual_seed(args.seed)
    if args.params is not None:
        check_output_file(args.out, (".npz",))
    else:
        out = check_output_folder(args.out)
        check_output_file(out.parent / f"{out.name}_truth.fits", (".fits",))
    if args.params is not None:
        p = torch.tensor([args.params], dtype=torch.float64)
        stokes = me(p, filling_factor=args.filling_factor)
        if args.noise > 0:
            stokes = add_noise(stokes, args.noise, gen)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, wavelengths=me.wavelengths, stokes=stokes[0].numpy(), params=p[0].numpy(),
                 parameter_names=np.array(PARAMETER_NAMES))
        print(f"wrote {out}")
        if args.plot:
            print(f"wrote {save_figure(plot_stokes_profiles(me.wavelengths, stokes[0].numpy()), args.plot)}")
        return 0
    truth = smooth_random_maps(args.nx, args.ny, args.seed)
    params = torch.from_numpy(truth.reshape(-1, len(PARAMETER_NAMES)))
    with torch.inference_mode():
        stokes = torch.cat([me(params[i:i + 2000]) for i in range(0, params.shape[0], 2000)])
    stokes = add_noise(stokes, args.noise, gen).numpy().reshape(args.nx, args.ny, 4, -1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    for x in tqdm(range(args.nx), desc="slit files", unit="file"):
        write_sp_level1(out / f"SP4D_synth_{x:04d}.fits", stokes[x] * args.continuum_counts, spbshft=args.spbshft,
                        header_cards={"SLITINDX": x, "ORIGIN": "stellarnn synthetic ME"})
    maps = {name: truth[..., k] for k, name in enumerate(PARAMETER_NAMES)}
    truth_path = out.parent / f"{out.name}_truth.fits"
    write_parameter_maps(truth_path, maps, UNITS, {"NOISE": args.noise, "SEED": args.seed})
    print(f"wrote {args.nx} level-1 slit files to {out} and the true parameter maps to {truth_path}")
    return 0


def cmd_invert(args) -> int:
    from .hinode_io import read_sp_map, write_parameter_maps
    from .plotting import plot_parameter_maps

    sp = read_sp_map(args.input, continuum_counts=args.continuum_counts, normalisation=args.normalisation)
    nx, ny, _, nwl = sp.stokes.shape
    flat = sp.stokes.reshape(-1, 4, nwl)
    bad = ~np.isfinite(flat).all(axis=(1, 2))
    if bad.all():
        raise ValueError("no finite Stokes profiles in the input")
    t0 = time.perf_counter()
    units = {**UNITS, **{f"e_{k}": v for k, v in UNITS.items()}}
    if args.method == "stratified":
        from .stratified_cnn import STRATIFIED_UNITS, RoutedStratifiedInverter, StratifiedInverter

        default = args.weights == str(DEFAULT_WEIGHTS)
        strong = args.strong_weights
        if default and strong is None and DEFAULT_FIELD_WEIGHTS.is_file() and DEFAULT_STRONG_WEIGHTS.is_file():
            weights, strong = DEFAULT_FIELD_WEIGHTS, DEFAULT_STRONG_WEIGHTS
        else:
            weights = DEFAULT_STRATIFIED_WEIGHTS if default else Path(args.weights)
        for w in (weights, strong):
            if w is not None and not Path(w).is_file():
                raise FileNotFoundError(f"stratified-CNN weights {w} not found (train with "
                                        "`stellarnn stokes train --stratified DIR`)")
        inverter = (RoutedStratifiedInverter(weights, strong, threshold_gauss=args.route_threshold)
                    if strong is not None else StratifiedInverter(weights))
        print(f"stratified CNN: {Path(weights).name}" + (f", and {Path(strong).name} where |B(log tau -1)| > "
                                                        f"{args.route_threshold:g} G" if strong is not None else ""))
        strat = inverter.invert(torch.from_numpy(flat[~bad]).float(), wavelengths=sp.wavelengths)
        res, units = {}, {}
        if "route" in strat:  # one value per profile: 1 where the strong-field network answered
            res["route"], units["route"] = strat.pop("route"), ""
        for name, values in strat.items():
            for j, node in enumerate(inverter.log_tau_nodes):
                key = f"{name}_logtau{node:+.1f}"
                res[key] = values[:, j]
                units[key] = STRATIFIED_UNITS.get(name, "")
    elif args.method == "cnn":
        from .me_cnn import MEInverter

        weights = Path(args.weights)
        if not weights.is_file():
            raise FileNotFoundError(f"ME-CNN weights {weights} not found (train with `stellarnn stokes train`)")
        res = MEInverter(weights).invert(torch.from_numpy(flat[~bad]).float(), wavelengths=sp.wavelengths)
    else:
        from .lm_inversion import invert_lm

        from .wavelength_grid import resample_profiles

        lm_input = flat[~bad]
        try:  # the ME model on the file's own grid
            me = MilneEddington(wavelengths=sp.wavelengths)
        except ValueError:  # an unevenly sampled grid (the PSF needs even steps): fit on the nominal grid
            me = MilneEddington()
            lm_input, _ = resample_profiles(lm_input, sp.wavelengths)
        res = invert_lm(torch.from_numpy(lm_input), me, sigma=args.noise, n_starts=args.starts,
                        progress=True)
    seconds = time.perf_counter() - t0
    maps = {}
    for name, values in res.items():
        full = np.full(nx * ny, np.nan)
        full[~bad] = values
        maps[name] = full.reshape(nx, ny)
    contcnt = sp.continuum_counts if np.isfinite(sp.continuum_counts) else -1.0  # -1: per-pixel
    out = write_parameter_maps(args.out, maps, units, {"METHOD": args.method, "CONTCNT": contcnt,
                                                       "NPROF": int((~bad).sum()), "SECONDS": round(seconds, 3),
                                                       "NORMALIS": sp.normalisation or "unstated",
                                                       "WLSTART": float(sp.wavelengths[0]),
                                                       "WLSTEPMA": float(np.median(np.diff(sp.wavelengths)) * 1e3)})
    print(f"inverted {int((~bad).sum())} profiles with {args.method} in {seconds:.2f} s "
          f"({(~bad).sum() / seconds:.0f} profiles/s); {int(bad.sum())} skipped (non-finite); wrote {out}")
    if args.plot:
        shown = (("temperature_logtau-1.0", "v_los_logtau-1.0", "B_los_logtau-1.0", "B_perp_logtau-1.0")
                 if args.method == "stratified" else ("B", "gamma", "chi", "v_los"))
        print(f"wrote {save_figure(plot_parameter_maps(maps, units, shown), args.plot)}")
    return 0


def cmd_train(args) -> int:
    from .me_cnn import train_me_cnn

    check_output_file(args.out if args.out != str(DEFAULT_WEIGHTS) or not args.stratified
                      else DEFAULT_STRATIFIED_WEIGHTS, (".pt",))
    torch.set_num_threads(args.threads)
    if args.stratified:
        from .lightweaver_driver import load_stratified_set
        from .stratified_cnn import train_stratified_cnn

        sets = [load_stratified_set(d) for d in args.stratified]
        data = {k: np.concatenate([d[k] for d in sets]) for k in ("stokes", "targets", "regime", "effects_applied")}
        data["files"] = [f for d in sets for f in d["files"]]
        if args.train_regimes:
            keep = np.isin(data["regime"], args.train_regimes)
            if not keep.any():
                raise ValueError(f"no profile of the regimes {args.train_regimes} in {', '.join(args.stratified)}")
            data.update({k: data[k][keep] for k in ("stokes", "targets", "regime", "effects_applied")})
        weights = None
        if args.weight_log_tau and not args.quantity_weight:
            raise ValueError("--weight-log-tau needs --quantity-weight (which quantity to weigh over that range)")
        if args.quantity_weight:
            from .stratified_cnn import target_weights_for

            weights = target_weights_for({name: float(w) for name, w in args.quantity_weight},
                                         tuple(args.weight_log_tau) if args.weight_log_tau else None)
        out = args.out if args.out != str(DEFAULT_WEIGHTS) else str(DEFAULT_STRATIFIED_WEIGHTS)
        regimes = dict(zip(*np.unique(data["regime"], return_counts=True)))
        print(f"{len(data['stokes'])} Lightweaver profiles from {len(data['files'])} chunk files; regimes "
              + ", ".join(f"{k} {v}" for k, v in regimes.items()))
        quiet_sun = None
        if args.stray_light_max > 0:  # the unpolarised quiet-Sun profile through the PSF (one Lightweaver call)
            from .lightweaver_driver import LightweaverSynthesizer

            quiet_sun = LightweaverSynthesizer().quiet_sun_intensity
        metrics = train_stratified_cnn(data["stokes"], data["targets"], out, physics_weight=args.physics_weight,
                                       epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                       channels=args.channels, hidden=args.hidden, augment=not args.no_augment,
                                       weight_decay=args.weight_decay, resume_path=args.resume, seed=args.seed,
                                       constrained=args.constrained, stray_light_max=args.stray_light_max,
                                       continuum_error_sigma=args.continuum_error, quiet_sun_intensity=quiet_sun,
                                       effects_applied=data["effects_applied"], max_seconds=args.max_seconds,
                                       field_loss_weight=args.field_loss_weight,
                                       field_loss_scale_gauss=args.field_loss_scale, init_path=args.init,
                                       target_weights=weights)
        print(f"wrote {out}: {metrics['epochs_run']} epochs, validation loss {metrics['best_val_loss']:.4f}")
        if args.manifest:
            from ..train import update_manifest

            seeds = sorted({Path(f).name.split("_")[1] for f in data["files"]})
            update_manifest(Path(out).parent / "manifest.json", out, Path(out).stem,
                            args.command_line,
                            training_data=f"{len(data['stokes'])} Lightweaver profiles ({', '.join(seeds)}) in "
                                          f"{', '.join(args.stratified)}: perturbed FAL-C, Fe I 6301.5/6302.5, "
                                          "Hinode SP sampling; 1e-3 I_c noise per batch; stray light "
                                          f"U(0, {args.stray_light_max}) and continuum factor N(1, "
                                          f"{args.continuum_error}) per batch where the set has none; "
                                          "10 % validation split",
                            dtype="float16")
            print(f"wrote the {Path(out).stem} entry of {Path(out).parent / 'manifest.json'}")
        for name in ("temperature", "v_los", "B_los"):
            print(f"  Pearson r {name}: " + " ".join(f"{r:.2f}" for r in metrics["pearson_r"][name]))
        return 0
    if not args.data_dir:
        raise ValueError("--data-dir is required for the ME-CNN (or give --stratified DIR)")
    metrics = train_me_cnn(args.out, args.data_dir, n_train=args.n_train, n_val=args.n_val, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, resume_path=args.resume,
                           max_seconds=args.max_seconds, seed=args.seed)
    print(f"wrote {args.out}: best epoch {metrics['best_epoch']}, validation NLL {metrics['val_nll']:.4f}")
    for name, value in metrics["val_rmse"].items():
        print(f"  rmse {name}: {value:.4g}")
    return 0


def cmd_build_set(args) -> int:
    from .lightweaver_driver import ObservationEffects, build_stratified_set

    effects = ObservationEffects(psf_fwhm_ma=args.psf_fwhm_ma, noise_sigma=args.noise,
                                 stray_light_max=args.stray_light_max, continuum_error_sigma=args.continuum_error)
    data = build_stratified_set(args.directory, args.n, seed=args.seed, chunk_size=args.chunk_size,
                                workers=args.workers, regimes=args.regimes, effects=effects)
    counts = dict(zip(*np.unique(data["regime"], return_counts=True)))
    print(f"{len(data['stokes'])} profiles (seed {args.seed}) in {args.directory}; regimes "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_plot(args) -> int:
    from .hinode_io import read_parameter_maps, read_sp_map
    from .plotting import plot_parameter_maps, plot_stokes_profiles

    path = Path(args.input)
    if args.profile is not None:
        sp = read_sp_map(path)
        x, y = args.profile
        if not (0 <= x < sp.stokes.shape[0] and 0 <= y < sp.stokes.shape[1]):
            raise ValueError(f"pixel ({x}, {y}) outside the {sp.stokes.shape[:2]} raster")
        fig = plot_stokes_profiles(sp.wavelengths, sp.stokes[x, y], title=f"pixel x={x} y={y}")
        print(f"wrote {save_figure(fig, args.out)}")
        return 0
    maps, units = read_parameter_maps(path)
    names = tuple(args.names) if args.names else None
    print(f"wrote {save_figure(plot_parameter_maps(maps, units, names, title=path.name), args.out)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stokes", help="solar Stokes inversion: Milne-Eddington synthesis, LM and CNN inversions",
                              description="Milne-Eddington synthesis of Fe I 6301.5/6302.5 at Hinode SP sampling, "
                                          "classical (Levenberg-Marquardt) and neural (ME-CNN) inversions; Lightweaver "
                                          "depth-stratified profiles and the stratified CNN.")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="stokes_command", metavar="ACTION")

    q = s.add_parser("synth", help="synthesise one ME profile (--params) or a random raster as level-1 SP files")
    q.add_argument("--out", required=True, help="output directory (raster; true maps go to <dir>_truth.fits) or .npz file (--params)")
    q.add_argument("--params", type=float, nargs=9, metavar=("B", "GAMMA", "CHI", "VLOS", "DW", "ETA0", "A", "S0", "S1"),
                   help="one profile: B [G], γ [deg], χ [deg], v_LOS [km/s], Δλ_D [mÅ], η0, a, S0, S1 [Ic]")
    q.add_argument("--filling-factor", type=float, default=None, help="magnetic filling factor (with --params)")
    q.add_argument("--plot", type=plot_file, help="PNG of the profile (with --params)")
    q.add_argument("--nx", type=positive_int, default=16, help="slit positions of the raster")
    q.add_argument("--ny", type=positive_int, default=32, help="pixels along the slit")
    q.add_argument("--noise", type=float, default=1e-3, help="white noise [Ic]")
    q.add_argument("--continuum-counts", type=positive_float, default=60000.0, help="continuum intensity in counts")
    q.add_argument("--spbshft", type=int, default=3, choices=(0, 1, 2, 3), help="level-1 bit shift to apply")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_synth)

    q = s.add_parser("invert", help="invert level-1 SP slit files into ME parameter maps (FITS)")
    q.add_argument("input", help="directory of Hinode SP level-1 slit FITS files, one slit file, or a 4-D "
                                 "Stokes cube (floats or integer counts)")
    q.add_argument("--out", required=True, type=output_file(".fits", ".fit"), help="output FITS of parameter maps")
    q.add_argument("--method", choices=("cnn", "lm", "stratified"), default="cnn",
                   help="cnn: ME-CNN; lm: Levenberg-Marquardt ME fit; stratified: stratified CNN "
                        "(maps per log tau node)")
    q.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help=f"CNN checkpoint (default {DEFAULT_WEIGHTS.name}; for --method stratified "
                        f"{DEFAULT_FIELD_WEIGHTS.name} routed with {DEFAULT_STRONG_WEIGHTS.name}, or "
                        f"{DEFAULT_STRATIFIED_WEIGHTS.name} where those are missing)")
    q.add_argument("--strong-weights", default=None,
                   help="--method stratified: a strong-field network that answers the profiles for which --weights "
                        "finds |B| above --route-threshold at log tau -1")
    q.add_argument("--route-threshold", type=positive_float, default=ROUTE_THRESHOLD_GAUSS,
                   help="--method stratified with two networks: the routing field strength [G]")
    q.add_argument("--starts", type=positive_int, default=4, help="LM starts per profile")
    q.add_argument("--noise", type=positive_float, default=1e-3, help="noise σ [Ic] for the LM χ²")
    q.add_argument("--continuum-counts", type=positive_float, default=None,
                   help="continuum counts (default: raster mean)")
    q.add_argument("--normalisation", choices=("quiet-sun", "per-pixel", "none"), default="quiet-sun",
                   help="continuum unit: quiet-Sun mean (default), each pixel's own continuum, or none (a "
                        "calibrated cube already in I_c); stated in the output header (NORMALIS)")
    q.add_argument("--plot", type=plot_file, help="PNG of the B, γ, χ, v_LOS maps")
    q.set_defaults(func=cmd_invert)

    q = s.add_parser("train", help="train the ME-CNN on synthetic ME profiles, or the stratified CNN on the "
                                   "Lightweaver set (--stratified); resumable")
    q.add_argument("--out", default=str(DEFAULT_WEIGHTS),
                   help=f"float16 checkpoint to write (default {DEFAULT_WEIGHTS.name}, or "
                        f"{DEFAULT_STRATIFIED_WEIGHTS.name} with --stratified)")
    q.add_argument("--data-dir", help="ME-CNN: directory for the chunked synthetic ME training set")
    q.add_argument("--stratified", metavar="DIR", nargs="+",
                   help="train the stratified CNN on the Lightweaver chunks in DIR (several folders are concatenated)")
    q.add_argument("--stray-light-max", type=float, default=0.0,
                   help="stratified CNN: stray-light fraction U(0, this) drawn per batch for profiles built without "
                        "observation effects (0: none; 0.2 for Hinode-like training)")
    q.add_argument("--continuum-error", type=float, default=0.0,
                   help="stratified CNN: continuum factor N(1, this) per batch for profiles built without "
                        "observation effects (0: none; 0.01 for Hinode-like training)")
    q.add_argument("--manifest", action="store_true", help="stratified CNN: add/replace its entry in the "
                   "manifest.json next to --out")
    q.add_argument("--physics-weight", type=float, default=0.0,
                   help="stratified CNN: weight of the weak-field B_LOS consistency term (0: none)")
    q.add_argument("--field-loss-weight", type=float, default=0.0,
                   help="stratified CNN: weight of the asinh(B / B0) loss on B_LOS and B_perp (0: none), which "
                        "counts weak fields as much as strong ones")
    q.add_argument("--field-loss-scale", type=float, default=50.0, help="stratified CNN: B0 of the field loss [G]")
    q.add_argument("--train-regimes", nargs="+", choices=("quiet", "network", "plage", "penumbra", "umbra"),
                   help="stratified CNN: train only on the profiles of these regimes (a specialist)")
    q.add_argument("--quantity-weight", nargs=2, action="append", metavar=("QUANTITY", "WEIGHT"),
                   help="stratified CNN: loss weight of one output quantity (temperature, v_los, B_los, B_perp, sin2chi, "
                        "cos2chi; repeatable) at the nodes of --weight-log-tau")
    q.add_argument("--weight-log-tau", nargs=2, type=float, metavar=("LO", "HI"),
                   help="stratified CNN: the log tau500 range of --quantity-weight (default: every node)")
    q.add_argument("--init", help="stratified CNN: start from this checkpoint's weights (same architecture)")
    q.add_argument("--constrained", action="store_true", help="stratified CNN: physically bounded outputs by "
                   "construction (T in 3000-12000 K, |v_LOS| <= 12 km/s, B_perp >= 0)")
    q.add_argument("--no-augment", action="store_true", help="stratified CNN: no azimuth-rotation / mirror "
                   "augmentation of the training batches")
    q.add_argument("--channels", type=int, default=32, help="stratified CNN: width of the first convolutions")
    q.add_argument("--hidden", type=int, default=256, help="stratified CNN: width of the dense layer")
    q.add_argument("--weight-decay", type=float, default=0.0, help="stratified CNN: Adam weight decay")
    q.add_argument("--resume", help="resume file (written after every epoch)")
    q.add_argument("--n-train", type=positive_int, default=200000)
    q.add_argument("--n-val", type=positive_int, default=10000)
    q.add_argument("--epochs", type=int, default=60)
    q.add_argument("--batch-size", type=positive_int, default=256)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--max-seconds", type=float, default=None, help="stop after this wall time (best weights kept)")
    q.add_argument("--threads", type=positive_int, default=1, help="torch threads (1)")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_train)

    q = s.add_parser("build-set", help="build Lightweaver depth-stratified profiles in resumable chunks")
    q.add_argument("directory", nargs="?", default=str(DEFAULT_STRATIFIED_SET), type=output_folder,
                   help="chunk directory")
    q.add_argument("--n", type=positive_int, default=20000, help="profiles to have in the directory for this seed")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--chunk-size", type=positive_int, default=50)
    q.add_argument("--workers", type=positive_int, default=1, help="processes (one single-threaded Lightweaver each)")
    q.add_argument("--regimes", nargs="+", choices=("quiet", "network", "plage", "penumbra", "umbra"), default=None,
                   help="solar regimes drawn uniformly per profile (default: the single broad prior)")
    q.add_argument("--psf-fwhm-ma", type=float, default=30.0,
                   help="FWHM of the Gaussian Hinode SP spectral PSF in mÅ (30)")
    q.add_argument("--noise", type=float, default=0.0, help="white noise in I_c added to the stored profiles (0; "
                   "training adds 1e-3 itself)")
    q.add_argument("--stray-light-max", type=float, default=0.0,
                   help="stray-light fraction drawn from U(0, this) (0: none; 0.2 for Hinode-like sets)")
    q.add_argument("--continuum-error", type=float, default=0.0,
                   help="sigma of the continuum-normalisation factor N(1, sigma) (0: none; 0.01 for Hinode-like sets)")
    q.set_defaults(func=cmd_build_set)

    q = s.add_parser("plot", help="plot parameter maps (FITS from invert/synth) or one pixel's profiles")
    q.add_argument("input", help="parameter-map FITS, or a level-1 directory/file with --profile")
    q.add_argument("--out", required=True, type=plot_file, help="PNG file (.png is appended when there is no "
                   "extension)")
    q.add_argument("--names", nargs="*", help="maps to show (default: all)")
    q.add_argument("--profile", type=int, nargs=2, metavar=("X", "Y"), help="plot Stokes profiles of pixel X Y")
    q.set_defaults(func=cmd_plot)
