import json

import torch

from stellarnn.train import file_sha256, read_manifest, register_model, save_checkpoint, update_manifest


@register_model("manifest_test_linear")
class Linear(torch.nn.Linear):
    pass


def test_update_replaces_by_name_and_reads_older_layouts(tmp_path):
    ck = save_checkpoint(tmp_path / "w" / "net.pt", Linear(2, 3), "manifest_test_linear", {"in_features": 2, "out_features": 3}, metrics={"loss": 0.5})
    manifest = tmp_path / "w" / "manifest.json"
    update_manifest(manifest, ck, "net", "cmd 1", training_data="toy", metrics={"bench": 1.0})
    other = save_checkpoint(tmp_path / "w" / "sub" / "other.pt", Linear(1, 1), "manifest_test_linear", {"in_features": 1, "out_features": 1})
    update_manifest(manifest, other, "other", "cmd o")
    entry = update_manifest(manifest, ck, "net", "cmd 2", extra_field=[1, 2])
    entries = json.loads(manifest.read_text())["models"]
    assert [e["name"] for e in entries] == ["other", "net"]
    assert entries[0]["file"] == "sub/other.pt"
    assert entry["command"] == "cmd 2" and entry["sha256"] == file_sha256(ck) and entry["extra_field"] == [1, 2]
    assert entry["training_metrics"] == {"loss": 0.5} and entry["kind"] == "manifest_test_linear" and entry["metrics"] == {}
    assert read_manifest(manifest) == entries
    # older layouts: a bare list, and entries keyed by file name
    (tmp_path / "list.json").write_text(json.dumps([{"name": "a", "file": "a.pt"}]))
    (tmp_path / "keyed.json").write_text(json.dumps({"b.pt": {"sha256": "x"}}))
    assert read_manifest(tmp_path / "list.json") == [{"name": "a", "file": "a.pt"}]
    assert read_manifest(tmp_path / "keyed.json") == [{"name": "b", "file": "b.pt", "sha256": "x"}]
