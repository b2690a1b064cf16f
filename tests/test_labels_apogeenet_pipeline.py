import numpy as np
import pytest
import torch

from stellarnn.labels.apogeenet.network import APOGEENetResNet
from stellarnn.labels.apogeenet.pipeline import APOGEENetPipeline
from stellarnn.labels.noise_model import NoiseModel, attach_noise_model
from stellarnn.labels.pipeline import FieldInfo, Pipeline, get_pipeline
from stellarnn.spectra import Spectrum, read_apstar
from stellarnn.train import save_checkpoint

TINY = dict(stem_channels=2, block_channels=[2, 4], kernel_size=30, pool_length=16, head_width=16, n_head_layers=2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("anet") / "apogeenet_tiny.pt"
    return save_checkpoint(path, APOGEENetResNet(**TINY), "apogeenet", TINY, half=True)


@pytest.fixture(scope="module")
def spectra(real_file):
    a = read_apstar(real_file("apstar-2M17335483"))
    b = read_apstar(real_file("apstar-2M19485057"))
    return [a.combined, *a.visits, b.combined]


def test_runs_end_to_end_on_real_apstar(weights, spectra):
    p = get_pipeline("apogeenet", weights=weights, batch_size=2, ood_emulator=False)
    assert isinstance(p, Pipeline) and isinstance(p, APOGEENetPipeline)
    assert len(p.version) == 12 and all(isinstance(v, FieldInfo) for v in p.fields.values())
    rows = p.process(spectra)
    assert len(rows) == len(spectra)
    for r in rows:
        assert set(r) == set(p.fields) | {"reason"} and r["reason"] == ""
        assert np.isfinite([r["teff"], r["logg"], r["fe_h"], r["raw_e_teff"]]).all()
        assert r["raw_e_logg"] > 0
        # published noise model
        assert r["e_teff"] == pytest.approx(1.25 * r["raw_e_teff"] + 10)
        assert r["e_logg"] == pytest.approx(1.25 * r["raw_e_logg"] + 0.01)
        assert r["e_fe_h"] == pytest.approx(r["raw_e_fe_h"] + 0.01)
        assert r["flag_bad"] == bool(r["result_flags"])
    # same seed -> same rows (NaN columns: no emulator here)
    def finite(rs):
        return [{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))} for r in rs]

    assert finite(p.process(spectra)) == finite(rows)


def test_bad_spectra_get_runtime_exception_flag(weights, spectra):
    p = get_pipeline("apogeenet", weights=weights, ood_emulator=False)
    dead = Spectrum(spectra[0].wavelength, spectra[0].flux, np.zeros(8575))
    short = Spectrum(np.arange(10.0), np.ones(10), np.ones(10))
    rows = p.process([dead, spectra[0], short, None])
    assert [r["result_flags"] for r in (rows[0], rows[2], rows[3])] == [1, 1, 1]
    assert all(r["flag_bad"] and r["reason"] for r in (rows[0], rows[2], rows[3]))
    assert np.isnan(rows[0]["teff"]) and rows[1]["reason"] == ""
    assert p.process([]) == []


def test_stored_noise_model_is_used(tmp_path, weights, spectra):
    import shutil

    path = shutil.copy(weights, tmp_path / "w.pt")
    attach_noise_model(path, NoiseModel(["teff", "logg", "fe_h"], [2.0, 1.0, 1.0], [0.0, 0.0, 0.5]))
    r = get_pipeline("apogeenet", weights=path).process(spectra[:1])[0]
    assert r["e_teff"] == pytest.approx(2 * r["raw_e_teff"]) and r["e_fe_h"] == pytest.approx(r["raw_e_fe_h"] + 0.5)
    # a model per population: each star by the population of its predicted labels, the global one outside them
    from stellarnn.labels.noise_model import population_of_predictions
    from stellarnn.synthesis.populations import POPULATIONS

    own = {name: ([3.0, 3.0, 3.0], [0.0, 0.0, 0.0]) for name in POPULATIONS}
    attach_noise_model(path, NoiseModel(["teff", "logg", "fe_h"], [1.0] * 3, [0.0] * 3, by_population=own))
    rows = get_pipeline("apogeenet", weights=path).process([spectra[0], spectra[-1]])
    population = population_of_predictions(["teff", "logg", "fe_h"], [[r[k] for k in ("teff", "logg", "fe_h")]
                                                                      for r in rows])
    for r, name in zip(rows, population):
        assert r["e_logg"] == pytest.approx((3.0 if name else 1.0) * r["raw_e_logg"])
        assert r["population"] == name  # the row says which population's model set its e_ columns
    # an S/N term, here for one population only: e = hypot(linear, snr_term 100 / snr_error) for its stars
    chosen = next(name for name in population if name)
    own = {chosen: ([1.0] * 3, [0.0] * 3, [50.0, 0.0, 0.0])}
    attach_noise_model(path, NoiseModel(["teff", "logg", "fe_h"], [1.0] * 3, [0.0] * 3, by_population=own))
    rows = get_pipeline("apogeenet", weights=path).process([spectra[0], spectra[-1]])
    for r, name in zip(rows, population):
        term = 50.0 * 100 / r["snr_error"] if name == chosen else 0.0
        assert r["e_teff"] == pytest.approx(np.hypot(r["raw_e_teff"], term)) and r["e_logg"] == r["raw_e_logg"]


def test_missing_weights_error(tmp_path, monkeypatch):
    (tmp_path / "apogeenet").mkdir()
    (tmp_path / "apogeenet" / "manifest.json").write_text('{"models": [{"file": "gone.pt"}]}')
    monkeypatch.setenv("STELLARNN_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gone.pt, which is missing"):
        get_pipeline("apogeenet")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        get_pipeline("apogeenet", weights=tmp_path / "none.pt")
    with pytest.raises(ValueError, match="n_draws"):
        get_pipeline("apogeenet", weights=save_checkpoint(tmp_path / "x.pt", APOGEENetResNet(**TINY), "apogeenet",
                                                          TINY), n_draws=1)


def test_exception_inside_a_batch_flags_only_that_spectrum(weights, spectra, monkeypatch):
    p = get_pipeline("apogeenet", weights=weights, n_draws=3, ood_emulator=False)
    original = p.predict_arrays

    def failing(flux, ivar, bitmask=None, generator=None, continuum=None):
        if np.any(flux[:, 0] == -1234.0):
            raise RuntimeError("simulated failure")
        return original(flux, ivar, bitmask, generator, continuum)

    monkeypatch.setattr(p, "predict_arrays", failing)
    bad = Spectrum(spectra[0].wavelength, np.r_[-1234.0, spectra[0].flux[1:]], spectra[0].ivar)
    rows = p.process([spectra[0], bad, spectra[4]])
    assert rows[1]["result_flags"] == 1 and "simulated failure" in rows[1]["reason"]
    assert rows[0]["reason"] == rows[2]["reason"] == "" and np.isfinite(rows[2]["teff"])


def test_spectra_without_information_get_flag_bad_and_nan_labels(weights, spectra):
    from test_labels_astronn_pipeline import bad_spectra

    p = get_pipeline("apogeenet", weights=weights, n_draws=3)
    bad = bad_spectra(spectra[-1])
    rows = p.process([spectra[-1], *bad.values()])
    for name, r in zip(bad, rows[1:]):
        assert r["flag_bad"] and r["result_flags"] & (16 | 32 | 64), (name, r["result_flags"])
        assert all(np.isnan(r[k]) for k in ("teff", "logg", "fe_h", "e_teff", "raw_e_fe_h")), name
        assert r["population"] is None, name  # no label, no population
        assert r["reason"].startswith("no stellar information"), (name, r["reason"])
    assert rows[1 + list(bad).index("flat_noise_snr100")]["result_flags"] & 64


def test_uncertainties_do_not_depend_on_the_batch_size(weights, spectra):
    rng = np.random.default_rng(6)
    s = spectra[-1]
    copies = [Spectrum(s.wavelength, s.flux + rng.normal(size=8575) / np.sqrt(s.ivar.clip(1e-12)), s.ivar)
              for _ in range(4)]
    batch = spectra + copies
    e = {}
    for size in (16, 5):
        rows = get_pipeline("apogeenet", weights=weights, n_draws=20, batch_size=size, ood_emulator=False).process(batch)
        e[size] = np.array([[r["e_teff"], r["raw_e_logg"], r["teff"]] for r in rows])
    assert np.array_equal(e[16], e[5])
    assert len(np.unique(e[16][:, 0])) == len(batch)


def _with_fake_brackett_cores(spectrum):
    from stellarnn.spectra.brackett_mask import CORE_LINES, brackett_wavelength_vacuum

    line = np.ones_like(spectrum.flux)
    for n in CORE_LINES:
        line[np.abs(spectrum.wavelength - brackett_wavelength_vacuum(n)) < 2.5] = 0.5
    return Spectrum(spectrum.wavelength, spectrum.flux * line, spectrum.ivar, spectrum.bitmask, dict(spectrum.meta))


def test_brackett_mask_two_passes(weights, spectra, monkeypatch):
    off = get_pipeline("apogeenet", weights=weights, n_draws=3, ood_emulator=False)
    assert off.brackett_mask is False  # a checkpoint without the setting: the shipped behaviour
    on = get_pipeline("apogeenet", weights=weights, n_draws=3, ood_emulator=False, brackett_mask=True)
    star = spectra[-1]
    fake = _with_fake_brackett_cores(star)
    a, b = on.process([star, fake])
    for k in ("teff", "logg", "fe_h", "e_teff"):
        assert a[k] == pytest.approx(b[k], rel=1e-6)  # the cores are not seen
    a, b = off.process([star, fake])
    assert a["teff"] != pytest.approx(b["teff"], rel=1e-9)
    # pass 1: every spectrum with the cool-star mask; pass 2: those with a pass-1 Teff >= 5500 K, cores only
    calls = []
    real = on.predict_arrays

    def fake_predict(flux, ivar, bitmask=None, generator=None, continuum=None, masked=None):
        calls.append((len(flux), np.asarray(masked)))
        out = real(flux, ivar, bitmask, generator, continuum, masked)
        out["teff"] = np.where(np.arange(len(flux)) % 2 == 0, 4800.0, 6200.0) if len(calls) == 1 else out["teff"]
        return out

    monkeypatch.setattr(on, "predict_arrays", fake_predict)
    rows = on.process([star, star, star])
    assert [c[0] for c in calls] == [3, 1] and calls[0][1].sum() == 725 and calls[1][1].sum() == 277
    assert rows[0]["teff"] == 4800.0 and rows[2]["teff"] == 4800.0 and rows[1]["teff"] != 6200.0


def same_rows(a: list[dict], b: list[dict]) -> bool:
    """Rows equal value for value and type, NaN equal to NaN."""
    def same(x, y):
        return type(x) is type(y) and (x == y or (isinstance(x, float) and x != x and y != y))
    return len(a) == len(b) and all(ra.keys() == rb.keys() and all(same(ra[k], rb[k]) for k in ra)
                                    for ra, rb in zip(a, b))


def test_cpu_defaults_keep_the_labels_and_bf16_is_refused(weights, spectra):
    from stellarnn.labels.apogeenet.uncertainty import DRAW_DEVICE_DEFAULTS

    default = get_pipeline("apogeenet", weights=weights, n_draws=4, device="cpu", ood_emulator=False)
    assert (default.batch_size, default.chunk_size) == (32, 128) == tuple(
        DRAW_DEVICE_DEFAULTS["cpu"][k] for k in ("batch_size", "chunk_size"))
    former = get_pipeline("apogeenet", weights=weights, n_draws=4, device="cpu", ood_emulator=False,
                          batch_size=32, chunk_size=128)
    assert same_rows(default.process(spectra), former.process(spectra))
    with pytest.raises(ValueError, match="CUDA"):
        get_pipeline("apogeenet", weights=weights, device="cpu", precision="bf16")
    with pytest.raises(ValueError, match=">= 1"):
        get_pipeline("apogeenet", weights=weights, device="cpu", chunk_size=0)
