import numpy as np
import pytest
import torch

from stellarnn.labels.astronn.network import OUTPUT_LABELS, build_astronn
from stellarnn.labels.astronn.pipeline import AstroNNPipeline
from stellarnn.labels.noise_model import NoiseModel, attach_noise_model
from stellarnn.labels.pipeline import Pipeline, available_pipelines, get_pipeline
from stellarnn.spectra import Spectrum, read_apstar
from stellarnn.train import save_checkpoint

NARROW = dict(dense_units=(16, 8), branch_units=(4, 4), wide_branch_units=(8, 4))


def norm(**k):
    return dict({"spectrum_mean": np.ones(7514), "label_mean": np.r_[4500.0, 2.5, np.zeros(20)],
                 "label_std": np.r_[500.0, 1.0, 0.2 * np.ones(20)]}, **k)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    m, hp = build_astronn(**NARROW)
    return save_checkpoint(tmp_path_factory.mktemp("ann") / "astronn_tiny.pt", m, "astronn", hp,
                           normalisation=norm(), half=True)


@pytest.fixture(scope="module")
def spectra(real_file):
    a = read_apstar(real_file("apstar-2M17335483"))
    b = read_apstar(real_file("apstar-2M19485057"))
    return [a.combined, *a.visits, b.combined]


def test_runs_end_to_end_on_real_apstar(weights, spectra):
    assert {"apogeenet", "astronn"} <= set(available_pipelines())
    p = get_pipeline("astronn", weights=weights, mc_passes=20, batch_size=3, ood_emulator=False)
    assert isinstance(p, Pipeline) and isinstance(p, AstroNNPipeline)
    rows = p.process(spectra)
    assert len(rows) == 5
    for r in rows:
        assert set(r) == set(p.fields) | {"reason"} and r["reason"] == ""
        for name in OUTPUT_LABELS:
            assert np.isfinite(r[name]) and r[f"raw_e_{name}"] > 0
            assert r[f"raw_{name}"] == r[name] and r[f"e_{name}"] == r[f"raw_e_{name}"]  # identity noise model
        assert r["flag_warn"] == (r["result_flags"] > 0)
    # visits of one star agree much better than the prior width (same network, similar spectra)
    teffs = [r["teff"] for r in rows[:4]]
    assert np.ptp(teffs) < 500


def test_bad_spectra_get_no_result_flag(weights, spectra):
    p = get_pipeline("astronn", weights=weights, mc_passes=4, ood_emulator=False)
    dead = Spectrum(spectra[0].wavelength, spectra[0].flux, np.zeros(8575))
    rows = p.process([dead, spectra[4], "not a spectrum"])
    for r in (rows[0], rows[2]):
        assert r["result_flags"] == 2048 and r["flag_warn"] and r["flag_bad"] and r["reason"]  # no labels: bad
        assert np.isnan(r["teff"]) and np.isnan(r["raw_e_ni_h"])
    assert rows[1]["reason"] == ""


def test_stored_noise_model_and_bad_checkpoints(tmp_path, weights, spectra):
    import shutil

    path = shutil.copy(weights, tmp_path / "w.pt")
    nm = NoiseModel(OUTPUT_LABELS, np.full(22, 2.0), np.full(22, 0.1))
    attach_noise_model(path, nm)
    r = get_pipeline("astronn", weights=path, mc_passes=4).process(spectra[:1])[0]
    assert r["e_mg_h"] == pytest.approx(2 * r["raw_e_mg_h"] + 0.1)
    # a model of its own for the population of a star's predicted labels, used instead of the global one
    from stellarnn.labels.noise_model import population_of_predictions

    def populations(rows):
        return population_of_predictions(["teff", "logg", "fe_h"], [[r[k] for k in ("teff", "logg", "fe_h")]
                                                                    for r in rows])

    rows = get_pipeline("astronn", weights=path, mc_passes=4).process([spectra[0], spectra[-1]])
    chosen = next(name for name in populations(rows) if name)
    attach_noise_model(path, NoiseModel(OUTPUT_LABELS, np.full(22, 2.0), np.full(22, 0.1),
                                        by_population={str(chosen): (np.full(22, 5.0), np.zeros(22))}))
    rows = get_pipeline("astronn", weights=path, mc_passes=4).process([spectra[0], spectra[-1]])
    for r, name in zip(rows, populations(rows)):
        expected = 5 * r["raw_e_mg_h"] if name == chosen else 2 * r["raw_e_mg_h"] + 0.1
        assert r["e_mg_h"] == pytest.approx(expected) and r["population"] == name
    # an S/N term: its error at S/N 100 scaled by 100 / the row's snr_error, in quadrature
    attach_noise_model(path, NoiseModel(OUTPUT_LABELS, np.full(22, 2.0), np.full(22, 0.1), snr_term=np.full(22, 0.3)))
    r = get_pipeline("astronn", weights=path, mc_passes=4).process(spectra[:1])[0]
    assert 20 < r["snr_error"] < 1e4
    assert r["e_mg_h"] == pytest.approx(np.hypot(2 * r["raw_e_mg_h"] + 0.1, 0.3 * 100 / r["snr_error"]))
    m, hp = build_astronn(**NARROW)
    bad = save_checkpoint(tmp_path / "bad.pt", m, "astronn", hp, normalisation={"label_mean": np.zeros(22)})
    with pytest.raises(ValueError, match="spectrum_mean"):
        get_pipeline("astronn", weights=bad)
    with pytest.raises(Exception, match="apogeenet"):
        from stellarnn.labels.apogeenet.network import APOGEENetResNet

        tiny = dict(stem_channels=2, block_channels=[2], kernel_size=3, pool_length=4, head_width=4, n_head_layers=1)
        get_pipeline("astronn", weights=save_checkpoint(tmp_path / "a.pt", APOGEENetResNet(**tiny), "apogeenet", tiny))


def test_exception_inside_a_batch_flags_only_that_spectrum(weights, spectra, monkeypatch):
    p = get_pipeline("astronn", weights=weights, mc_passes=4, ood_emulator=False)
    original = p.predict_normalised

    def failing(normalised_flux, seeds=None):
        if any(float(row[0]) == 0.0 for row in normalised_flux):  # the marked spectrum (zero flux at pixel 246)
            raise RuntimeError("simulated failure")
        return original(normalised_flux, seeds)

    monkeypatch.setattr(p, "predict_normalised", failing)
    bad = Spectrum(spectra[0].wavelength, np.r_[np.zeros(300), spectra[0].flux[300:]], spectra[0].ivar)
    rows = p.process([spectra[0], bad, spectra[4]])
    assert rows[1]["result_flags"] == 2048 and "simulated failure" in rows[1]["reason"]
    assert rows[0]["reason"] == rows[2]["reason"] == "" and np.isfinite(rows[2]["fe_h"])


def bad_spectra(s):
    """Spectra without stellar information, built from a real one (name -> Spectrum)."""
    rng = np.random.default_rng(5)
    one, blue = np.ones(8575), np.arange(8575) < 3300
    wl = s.wavelength
    return {"zero": Spectrum(wl, 0 * one, one), "constant": Spectrum(wl, 1000 * one, one * 1e-4),
            "negative": Spectrum(wl, -s.flux, s.ivar), "zero_mean_noise": Spectrum(wl, rng.normal(0, 1, 8575), one),
            "flat_noise_snr100": Spectrum(wl, 1000 + 10 * rng.normal(size=8575), one * 1e-2),
            "missing_blue_chip": Spectrum(wl, np.where(blue, 0, s.flux), np.where(blue, 0, s.ivar)),
            "errors_1e30": Spectrum(wl, s.flux, one * 1e-60),
            "snr_2": Spectrum(wl, 1000 + 500 * rng.normal(size=8575), one / 500 ** 2)}


def test_spectra_without_information_get_flag_bad_and_nan_labels(weights, spectra):
    p = get_pipeline("astronn", weights=weights, mc_passes=4)
    bad = bad_spectra(spectra[-1])
    rows = p.process([spectra[-1], *bad.values()])
    for name, r in zip(bad, rows[1:]):
        assert r["flag_bad"] and r["flag_warn"] and r["result_flags"] & (16 | 32 | 64), (name, r["result_flags"])
        assert all(np.isnan(r[k]) for k in OUTPUT_LABELS) and np.isnan(r["e_teff"]), name
        assert r["population"] is None, name  # no label, no population
        assert r["reason"].startswith("no stellar information"), (name, r["reason"])
        assert np.isfinite(r["snr_robust"]) and 0 <= r["good_fraction_blue"] <= 1
    assert rows[bad_index(bad, "missing_blue_chip")]["good_fraction_blue"] == 0
    assert rows[bad_index(bad, "flat_noise_snr100")]["result_flags"] & 64  # found by the emulator's line pattern


def bad_index(bad, name):
    return 1 + list(bad).index(name)


def test_uncertainties_do_not_depend_on_the_batch_size(weights, spectra):
    rng = np.random.default_rng(6)
    s = spectra[-1]
    copies = [Spectrum(s.wavelength, s.flux + rng.normal(size=8575) / np.sqrt(s.ivar.clip(1e-12)), s.ivar)
              for _ in range(4)]
    batch = spectra + copies  # 9 spectra
    e = {}
    for size in (16, 5, 2):
        rows = get_pipeline("astronn", weights=weights, mc_passes=10, batch_size=size, ood_emulator=False).process(batch)
        e[size] = np.array([[r["raw_e_teff"], r["teff"], r["raw_e_mg_h"]] for r in rows])
    assert np.array_equal(e[16], e[5]) and np.array_equal(e[16], e[2])
    assert len(np.unique(e[16][:, 0])) == len(batch)  # distinct spectra, distinct values


@pytest.mark.parametrize("name", ["astronn", "apogeenet"])
def test_shipped_networks_do_not_flag_held_out_like_spectra(name):
    from pathlib import Path

    from stellarnn.labels.astronn.training import synthetic_observations
    from stellarnn.spectra import apogee_wavelength
    from stellarnn.synthesis.grid_builder import load_grid

    grid = load_grid(Path(__file__).resolve().parents[1] / "grids" / "apogee" / "test")
    lab = grid["labels"]
    pick = np.flatnonzero((lab[:, 0] > 4000) & (lab[:, 0] < 7000) & (lab[:, 2] > -1.5))[:6]
    grid = {k: (v[pick] if isinstance(v, np.ndarray) and len(v) == len(lab) else v) for k, v in grid.items()}
    obs = synthetic_observations(grid, 100.0, seed=7)
    wl = apogee_wavelength()
    rows = get_pipeline(name).process([Spectrum(wl, f, iv) for f, iv in zip(obs["flux"], obs["ivar"])])
    for r in rows:
        assert r["result_flags"] & 0b11111110000 == 0, (r["result_flags"], r["reason"])
        assert 0.5 < r["ood_chi2"] < 5 and r["line_snr"] > 10 and r["ood_label_distance"] == 0
        assert np.isfinite(r["teff"])


def test_brackett_mask_two_passes(weights, spectra, monkeypatch):
    from stellarnn.spectra.brackett_mask import CORE_LINES, brackett_wavelength_vacuum

    off = get_pipeline("astronn", weights=weights, mc_passes=4, ood_emulator=False)
    assert off.brackett_mask is False  # a checkpoint without the setting: the shipped behaviour
    on = get_pipeline("astronn", weights=weights, mc_passes=4, ood_emulator=False, brackett_mask=True)
    star = spectra[-1]
    line = np.ones_like(star.flux)
    for n in CORE_LINES:
        line[np.abs(star.wavelength - brackett_wavelength_vacuum(n)) < 2.5] = 0.5
    fake = Spectrum(star.wavelength, star.flux * line, star.ivar, star.bitmask, dict(star.meta))
    a, b = on.process([star, fake])
    for k in ("teff", "logg", "fe_h", "mg_h", "e_teff"):
        assert a[k] == pytest.approx(b[k], rel=1e-5)  # the cores are not seen
    a, b = off.process([star, fake])
    assert a["teff"] != pytest.approx(b["teff"], rel=1e-7)
    # pass 1: every spectrum with the cool-star mask; pass 2: those with a pass-1 Teff >= 5500 K, cores only
    calls = []
    real = on.predict_normalised

    def fake_predict(x, seeds=None):
        calls.append(int((np.asarray(x) == 1.0).sum()))
        out = real(x, seeds)
        if len(calls) == 1:
            out["value"][:, 0] = np.where(np.arange(len(x)) % 2 == 0, 4800.0, 6200.0)
        return out

    monkeypatch.setattr(on, "predict_normalised", fake_predict)
    rows = on.process([star, star, star])
    from stellarnn.spectra import apogee_wavelength, kept_pixel_index
    from stellarnn.spectra.brackett_mask import brackett_mask

    already = np.asarray(on.quality.assess([star]).continuum.flux)[0] == 1.0  # masked by the DR17 normalisation
    wl = apogee_wavelength()[kept_pixel_index()]
    assert calls[0] == 3 * int((already | brackett_mask(wl, None)).sum())
    assert calls[1] == int((already | brackett_mask(wl, 6200.0)).sum()) < calls[0] // 3
    assert rows[0]["teff"] == 4800.0 and rows[2]["teff"] == 4800.0 and rows[1]["teff"] != 6200.0


def same_rows(a: list[dict], b: list[dict]) -> bool:
    """Rows equal value for value and type, NaN equal to NaN."""
    def same(x, y):
        return type(x) is type(y) and (x == y or (isinstance(x, float) and x != x and y != y))
    return len(a) == len(b) and all(ra.keys() == rb.keys() and all(same(ra[k], rb[k]) for k in ra)
                                    for ra, rb in zip(a, b))


def test_cpu_defaults_keep_the_labels_and_gpu_options_are_parameters(weights, spectra):
    """On a CPU the per-device defaults are the former fixed sizes (64 spectra, 4096 / 128 rows, one spectrum
    at a time), so the labels are those of the explicit former arguments bit for bit; grouping a bank's
    spectra (the GPU default) agrees to rounding; bf16 is refused on a CPU."""
    from stellarnn.labels.astronn.uncertainty import MC_DEVICE_DEFAULTS

    default = get_pipeline("astronn", weights=weights, mc_passes=10, device="cpu", ood_emulator=False)
    assert (default.batch_size, default.max_rows, default.chunk_rows, default.group_by_masks) == (64, 4096, 128, False)
    assert MC_DEVICE_DEFAULTS["cuda"]["chunk_rows"] == 65536 and MC_DEVICE_DEFAULTS["cuda"]["group_by_masks"]
    former = get_pipeline("astronn", weights=weights, mc_passes=10, device="cpu", ood_emulator=False,
                          batch_size=64, max_rows=4096, chunk_rows=128, group_by_masks=False)
    grouped = get_pipeline("astronn", weights=weights, mc_passes=10, device="cpu", ood_emulator=False,
                           chunk_rows=65536, max_rows=102400, group_by_masks=True)
    a, b, c = (p.process(spectra) for p in (default, former, grouped))
    assert same_rows(a, b)
    for ra, rc in zip(a, c):
        for name in OUTPUT_LABELS:
            assert rc[name] == pytest.approx(ra[name], rel=1e-5, abs=1e-6)
            assert rc[f"e_{name}"] == pytest.approx(ra[f"e_{name}"], rel=1e-4, abs=1e-6)
    with pytest.raises(ValueError, match="CUDA"):
        get_pipeline("astronn", weights=weights, device="cpu", precision="bf16")
    with pytest.raises(ValueError, match=">= 1"):
        get_pipeline("astronn", weights=weights, device="cpu", chunk_rows=0)
