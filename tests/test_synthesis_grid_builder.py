"""Tests of stellarnn.synthesis.grid_builder: grid specifications and loading several grids as one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from stellarnn.synthesis.grid_builder import GridSpec, grid_rows, label_columns, load_grid
from test_runner_inputs import write_test_grid


def _with_spec(folder, **changes):
    spec = {**GridSpec(name=folder.name, n=5, seed=1, broadening_labels=False).to_json(), **changes}
    (folder / "spec.json").write_text(json.dumps({"spec": spec}))


def test_several_grids_load_as_one(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    flux_a = write_test_grid(a, seed=1)
    flux_b = write_test_grid(b, seed=2)
    _with_spec(a)
    _with_spec(b, seed=7, name="other")  # seed, name and size may differ
    both = load_grid([a, b])
    one_a, one_b = load_grid(a), load_grid(b)
    assert len(both["index"]) == len(one_a["index"]) + len(one_b["index"]) == 8  # one failed spectrum per grid
    np.testing.assert_array_equal(both["grid"], [0] * 4 + [1] * 4)
    np.testing.assert_array_equal(both["index"], np.r_[one_a["index"], one_b["index"]])
    np.testing.assert_array_equal(both["flux"][:4], flux_a[[0, 2, 3, 4]].astype(np.float32))
    np.testing.assert_array_equal(both["flux"][4:], flux_b[[0, 2, 3, 4]].astype(np.float32))
    assert both["label_names"] == one_a["label_names"]
    assert load_grid([a])["flux"].shape == one_a["flux"].shape  # a one-element list is that grid


def test_label_columns_by_name_with_zero_broadening_for_grids_without_it():
    data = {"label_names": ["teff", "logg", "m_h"], "labels": np.array([[4500.0, 2.0, -0.5], [6000.0, 4.0, 0.1]])}
    got = label_columns(data, ["logg", "teff", "v_macro", "v_sini"])
    np.testing.assert_array_equal(got, [[2.0, 4500.0, 0.0, 0.0], [4.0, 6000.0, 0.0, 0.0]])
    with pytest.raises(KeyError, match="no label 'mg_m'"):
        label_columns(data, ["teff", "mg_m"])


def test_grid_rows_selects_spectra_in_every_per_spectrum_array(tmp_path):
    write_test_grid(tmp_path / "g", seed=1)
    _with_spec(tmp_path / "g")
    data = load_grid(tmp_path / "g")
    for rows, want in ((np.array([3, 0]), [3, 0]), (np.array([True, False, True, False]), [0, 2]),
                       (slice(None, 2), [0, 1])):
        sub = grid_rows(data, rows)
        for k, v in data.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(sub[k], v[want], err_msg=k)
        assert sub["label_names"] == data["label_names"] and len(sub["index"]) == len(want)


def test_grids_of_other_physics_are_not_concatenated(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_test_grid(a, seed=1)
    write_test_grid(b, seed=2)
    _with_spec(a)
    _with_spec(a, hydrogen_lines=False)
    _with_spec(b, hydrogen_lines=True)
    with pytest.raises(ValueError, match="hydrogen_lines"):
        load_grid([a, b])
    old = json.loads((a / "spec.json").read_text())
    del old["spec"]["hydrogen_lines"]  # a spec written before the field existed means no H I lines
    (a / "spec.json").write_text(json.dumps(old))
    _with_spec(b, hydrogen_lines=False)
    assert len(load_grid([a, b])["index"]) == 8
    with pytest.raises(ValueError, match="at least one"):
        load_grid([])
    (b / "spec.json").unlink()
    with pytest.raises(FileNotFoundError, match="spec.json"):
        load_grid([a, b])


def test_specs_written_before_the_hydrogen_field_mean_no_hydrogen_lines():
    old = GridSpec(name="apogee-1", n=2000, seed=1).to_json()
    del old["hydrogen_lines"]
    assert GridSpec.from_json(old).hydrogen_lines is False
    assert GridSpec.from_json({**old, "hydrogen_lines": True}).hydrogen_lines is True


def test_old_specs_read_with_the_physics_they_were_built_with():
    from stellarnn.synthesis.label_priors import LabelPrior

    old = GridSpec(name="apogee-1", n=2000, seed=1).to_json()
    for k in ("broadening_labels", "transfer_resolution", "hydrogen_lines"):
        del old[k]
    old["prior"] = {"teff": [3500, 8000], "logg": [0, 5], "m_h": [-2.5, 0.5], "x_m": [-0.5, 0.5],
                    "v_micro_scatter": 0.2}  # a box prior as the first grids wrote it (no name)
    spec = GridSpec.from_json(old)
    assert isinstance(spec.prior, LabelPrior)
    assert (spec.broadening_labels, spec.transfer_resolution, spec.hydrogen_lines) == (False, None, False)
    assert len(spec.label_names) == 21
    new = GridSpec(name="x", n=1, seed=1)
    assert new.hydrogen_lines and new.broadening_labels and new.transfer_resolution == 3e5
    assert new.label_names[-2:] == ("v_macro", "v_sini")
    assert GridSpec.from_json(new.to_json()) == new  # round trip, prior included


def test_unknown_prior_is_refused():
    from stellarnn.synthesis.label_priors import make_prior, prior_from_json

    with pytest.raises(ValueError, match="unknown label prior 'uniform'"):
        make_prior("uniform")
    with pytest.raises(ValueError, match="stratify"):
        make_prior("box", stratify=True)
    with pytest.raises(ValueError, match="unknown label prior"):
        prior_from_json({"name": "gaia"})


def test_grid_of_other_physics_is_not_resumed_in_the_same_folder(tmp_path):
    from stellarnn.synthesis.grid_builder import build_grid
    from stellarnn.synthesis.label_priors import LabelPrior

    spec = GridSpec(name="a", n=1, seed=1)
    (tmp_path / "spec.json").write_text(json.dumps({"spec": spec.to_json()}))
    other = GridSpec(name="a", n=1, seed=1, prior=LabelPrior(), broadening_labels=False)
    with pytest.raises(ValueError, match="different specification"):
        build_grid(tmp_path, other, progress=False)


def test_resumed_build_keeps_the_versions_it_started_with(tmp_path, monkeypatch):
    from stellarnn.synthesis import grid_builder

    spec = GridSpec(name="a", n=1, seed=1)
    first = {"pysme-astro": "1.0", "stellarnn": "0.1.0", "atlas9": "x"}
    (tmp_path / "spec.json").write_text(json.dumps({"spec": spec.to_json(), "provenance": first}))
    later = dict(first, stellarnn="0.2.0")
    monkeypatch.setattr(grid_builder, "provenance", lambda: later)
    monkeypatch.setattr(grid_builder, "_init_worker", lambda *args: None)  # no PySME
    monkeypatch.setattr(grid_builder, "compute_one", lambda i: (i, "ok"))
    grid_builder.build_grid(tmp_path, spec, progress=False, max_spectra=0)  # adds nothing: not listed
    assert "resumed_with" not in json.loads((tmp_path / "spec.json").read_text())
    for _ in range(2):  # resumed twice with the same later version, adding spectra: listed once
        grid_builder.build_grid(tmp_path, spec, progress=False)
    written = json.loads((tmp_path / "spec.json").read_text())
    assert written["provenance"] == first
    assert written["resumed_with"] == [later]


def test_spec_json_survives_a_build_killed_while_writing_it(tmp_path, monkeypatch):
    """spec.json is replaced atomically: a build killed mid-write (a session's end) keeps the previous file whole."""
    from pathlib import Path

    from stellarnn.synthesis import grid_builder

    spec = GridSpec(name="a", n=1, seed=1)
    before = json.dumps({"spec": spec.to_json(), "provenance": {"stellarnn": "0.1.0"}})
    (tmp_path / "spec.json").write_text(before)
    real = Path.write_text

    def killed(self, text, *args, **kwargs):  # half the text written, then the process dies
        real(self, text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        grid_builder.build_grid(tmp_path, spec, progress=False, max_spectra=0)
    monkeypatch.undo()
    assert (tmp_path / "spec.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("spec.json")] == ["spec.json"]


def test_resumed_build_reads_the_finished_spectra_once(tmp_path, monkeypatch):
    """The to-do list of a resumed build comes from one pass over the chunk files (reading them again for every
    spectrum of the grid kept a 12,000-spectrum build on one core for minutes at each restart), and holds
    exactly the spectra not yet computed, in order, cut at ``max_spectra``."""
    from stellarnn.synthesis import grid_builder

    spec = GridSpec(name="a", n=40, seed=1)
    (tmp_path / "pending").mkdir()
    for i in (0, 3, 39):  # finished spectra waiting to be packed
        np.savez(tmp_path / "pending" / f"{i:06d}.npz", index=i)
    calls, computed = [], []
    real = grid_builder.done_indices
    monkeypatch.setattr(grid_builder, "done_indices", lambda out: calls.append(out) or real(out))
    monkeypatch.setattr(grid_builder, "_init_worker", lambda *args: None)  # no PySME: record what would be computed
    monkeypatch.setattr(grid_builder, "compute_one", lambda i: (computed.append(i), "ok"))
    counts = grid_builder.build_grid(tmp_path, spec, progress=False, max_spectra=5)
    assert len(calls) == 1
    assert computed == [1, 2, 4, 5, 6]
    assert counts["todo"] == 5 and counts["ok"] == 5 and counts["requested"] == 40
    computed.clear()
    grid_builder.build_grid(tmp_path, spec, progress=False)
    assert computed == [i for i in range(40) if i not in (0, 3, 39)]


def test_truncated_chunk_is_detected_and_set_aside(tmp_path):
    from stellarnn.synthesis.grid_builder import _checksum_path, _sha256, corrupt_chunks

    write_test_grid(tmp_path)
    chunk = tmp_path / "chunks" / "chunk_0000.h5"
    _checksum_path(chunk).write_text(f"{_sha256(chunk)}  {chunk.name}\n")
    assert corrupt_chunks(tmp_path) == []
    assert len(load_grid(tmp_path)["index"]) == 4
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a killed copy
    assert corrupt_chunks(tmp_path) == [chunk]
    with pytest.raises(ValueError, match="sha256.*rebuilds it"):
        load_grid(tmp_path)


def test_committed_grids_share_one_specification():
    """train and train2 concatenate (the emulator is trained on both); the held-out test grid matches them."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "grids" / "apogee"
    specs = []
    for name in ("train", "train2", "test", "calib"):
        spec = json.loads((root / name / "spec.json").read_text())["spec"]
        specs.append({k: v for k, v in spec.items() if k not in ("name", "n", "seed")})
        assert GridSpec.from_json(spec).hydrogen_lines is False
    assert all(s == specs[0] for s in specs)


def test_new_grids_interpolate_atlas9_within_one_family_without_the_vturb_0_slice():
    spec = GridSpec(name="x", n=1, seed=1)
    assert spec.atmosphere_excluded_m_h == (0.0,) and spec.atmosphere_m_h_family == 0
    assert spec.atmosphere_slices_left_out() == [-5.0, -4.5, -3.5, -3.0, -0.3, -0.2, -0.1, 0.0, 0.1, 0.3, 1.0]
    atm = spec.atmospheres()
    filled = atm.axes["m_h"][atm.present.any(axis=(0, 1))]
    assert filled.tolist() == [-2.5, -2.0, -1.5, -1.0, -0.5, 0.2, 0.5]
    # [M/H] = 0 is interpolated between -0.5 and +0.2, both family-0 decks with VTURB 2 km/s
    t = {m: atm.interpolate_linear(teff=5750, logg=4.5, m_h=m).temperature for m in (-0.5, 0.0, 0.2)}
    n = min(len(v) for v in t.values())
    w = 0.5 / 0.7
    np.testing.assert_allclose(np.log10(t[0.0][-n:]), (1 - w) * np.log10(t[-0.5][-n:]) + w * np.log10(t[0.2][-n:]),
                               atol=1e-9)
    # no zig-zag between the families: T(tau_Ross ~ 1) of a solar-type dwarf moves smoothly with [M/H]
    k = int(np.argmin(np.abs(atm.log_tau)))
    deep = [atm.interpolate_linear(teff=5800, logg=4.4, m_h=m).temperature[k] for m in (0.0, 0.1, 0.2, 0.3)]
    assert np.all(np.abs(np.diff(deep)) < 5.0)  # K per 0.1 dex (across both families: ~100 K)
    # every slice, as the older grids were built
    both = GridSpec(name="x", n=1, seed=1, atmosphere_m_h_family=None)
    assert both.atmosphere_slices_left_out() == [0.0]
    with pytest.raises(ValueError, match="atmosphere_m_h_family"):
        GridSpec(name="x", n=1, seed=1, atmosphere_m_h_family=2).atmosphere_slices_left_out()
    old = GridSpec(name="x", n=1, seed=1).to_json()
    del old["atmosphere_excluded_m_h"], old["atmosphere_m_h_family"]
    legacy = GridSpec.from_json(old)
    assert legacy.atmosphere_excluded_m_h == () and legacy.atmosphere_m_h_family is None
    with pytest.raises(ValueError, match="no slice"):
        atm.without_slices("m_h", [0.05])


def test_grid_prior_reads_the_spec(tmp_path):
    from stellarnn.synthesis.grid_builder import grid_prior
    from stellarnn.synthesis.label_priors import ApogeeLikePrior

    assert grid_prior(tmp_path) is None  # no spec.json: the uniform box
    spec = GridSpec(name="x", n=5, seed=1, prior=ApogeeLikePrior())
    (tmp_path / "spec.json").write_text(json.dumps({"spec": spec.to_json()}))
    assert isinstance(grid_prior(tmp_path), ApogeeLikePrior)
