"""Model files (gnn.safeio): a lossless round trip, and loading never runs code from the file."""

from __future__ import annotations

import json
import math
import os
import stat
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from tests._deps import need

torch = need("torch")
sp = need("scipy.sparse")

from gnn.metrics import Abstention  # noqa: E402
from gnn.safeio import SafeIOError, load_tree, save_tree  # noqa: E402


def _sample() -> dict:
    shared = np.arange(6, dtype=np.int64).reshape(2, 3)
    return {
        "ints": [1, -2, 10**12], "floats": (0.5, float("nan"), float("-inf")), "text": "quote ' \" ` MATCH (n) DETACH DELETE n\x00",
        "set": {3, 1, 2}, "frozen": frozenset({"a"}), 7: "int key", ("t", 1): None,
        "odict": OrderedDict([("b", 1), ("a", 2)]), "vocab": {"red": np.int64(0), "blue": np.int64(1)},
        "arr": shared, "same_arr": shared, "strings": np.array(["x", "ÿ"]),
        "objarr": np.array([("a", 1), None], dtype=object),
        "scalar": np.float32(1.5), "dtype": np.float32,
        "sparse": sp.csr_matrix(np.eye(3, dtype=np.float32)),
        "tensor": torch.arange(4, dtype=torch.float32), "param": torch.nn.Parameter(torch.ones(2, 2)),
        "obj": Abstention({0: 0.5, 3: float("inf")}, 0.9, 0.98),
    }


def test_round_trip_keeps_types_values_and_sharing(tmp_path: Path) -> None:
    d = tmp_path / "m"
    save_tree(_sample(), d, "thing")
    got = load_tree(d, "thing")
    assert got["ints"] == [1, -2, 10**12]
    assert got["floats"][0] == 0.5 and math.isnan(got["floats"][1]) and got["floats"][2] == float("-inf")
    assert got["text"] == "quote ' \" ` MATCH (n) DETACH DELETE n\x00"
    assert got["set"] == {1, 2, 3} and got["frozen"] == frozenset({"a"}) and isinstance(got["frozen"], frozenset)
    assert got[7] == "int key" and got[("t", 1)] is None
    assert isinstance(got["odict"], OrderedDict) and list(got["odict"]) == ["b", "a"]
    assert got["vocab"] == {"red": 0, "blue": 1} and type(got["vocab"]["blue"]) is np.int64
    assert np.array_equal(got["arr"], np.arange(6).reshape(2, 3)) and got["arr"] is got["same_arr"]
    assert got["strings"].tolist() == ["x", "ÿ"] and got["objarr"][0] == ("a", 1) and got["objarr"][1] is None
    assert type(got["scalar"]) is np.float32 and got["scalar"] == 1.5 and got["dtype"] is np.float32
    assert sp.issparse(got["sparse"]) and got["sparse"].format == "csr" and (got["sparse"].toarray() == np.eye(3)).all()
    assert torch.equal(got["tensor"], torch.arange(4, dtype=torch.float32))
    assert isinstance(got["param"], torch.nn.Parameter) and got["param"].requires_grad
    assert isinstance(got["obj"], Abstention) and got["obj"].thresholds == {0: 0.5, 3: float("inf")}
    # private files: the directory 0700, every file 0600; no pickle anywhere
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert {p.name for p in d.iterdir()} == {"thing.json", "thing.npz", "thing.safetensors"}
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in d.iterdir())


def test_objects_off_the_allow_list_are_not_saved(tmp_path: Path) -> None:
    class Local:
        pass

    with pytest.raises(SafeIOError, match="not on the allow-list"):
        save_tree({"x": Local()}, tmp_path / "m", "thing")
    with pytest.raises(SafeIOError, match="cannot save the type builtins.eval|cannot save"):
        save_tree({"f": eval}, tmp_path / "m2", "thing")


@pytest.mark.parametrize("root", [
    {"$obj": "os._wrap_close", "state": {"$dicts": {}}},
    {"$obj": "builtins.eval", "state": {"$dicts": {}}},
    {"$obj": "gnn.safeio.os", "state": {"$dicts": {}}},
    {"$type": "builtins.exec"},
    {"$obj": "subprocess.Popen", "state": {"$dicts": {"args": "touch pwned"}}},
])
def test_a_file_naming_other_code_is_refused(tmp_path: Path, root: dict) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "thing.json").write_text(json.dumps({"format": 1, "writer": "attrgraph gnn.safeio", "files": {}, "root": root}))
    with pytest.raises(SafeIOError, match=str(d / "thing.json")):
        load_tree(d, "thing")
    assert not (Path.cwd() / "pwned").exists()


def test_tampered_or_missing_files_give_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "m"
    save_tree(_sample(), d, "thing")
    raw = bytearray((d / "thing.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (d / "thing.safetensors").write_bytes(bytes(raw))
    with pytest.raises(SafeIOError, match=r"thing\.safetensors: changed after it was saved"):
        load_tree(d, "thing")
    (d / "thing.npz").unlink()
    with pytest.raises(SafeIOError, match=r"thing\.npz: missing"):
        load_tree(d, "thing")
    (d / "thing.json").write_text("{not json")
    with pytest.raises(SafeIOError, match="not a model file"):
        load_tree(d, "thing")
    with pytest.raises(SafeIOError, match="no such model file"):
        load_tree(tmp_path / "nowhere", "thing")


def test_a_predictor_round_trips_and_an_old_pickle_is_never_read(tmp_path: Path) -> None:
    from gnn.completion import CompletionError, CompletionPredictor
    from gnn.snapshot import load_snapshot
    from tests.test_protocol import catalog, write_snapshot

    snap = load_snapshot(write_snapshot(tmp_path / "snap", catalog()))
    for model in ("majority", "tfidf"):
        pred = CompletionPredictor.fit(snap, model=model, min_products=1)
        d = pred.save(tmp_path / model)
        back = CompletionPredictor.load(d)
        a, b = pred.predict(snap), back.predict(snap)
        assert len(a) > 0 and np.array_equal(a.candidate, b.candidate)
        assert np.allclose(a.prob, b.prob, equal_nan=True) and np.array_equal(a.threshold, b.threshold)
    old = tmp_path / "old"
    old.mkdir()
    (old / "predictor.pkl").write_bytes(b"cos\nsystem\n(S'touch pwned'\ntR.")
    with pytest.raises(CompletionError, match="pickled predictor of an older attrgraph"):
        CompletionPredictor.load(old)
    assert not (Path.cwd() / "pwned").exists()


def test_private_dirs_are_created_and_tightened_to_0700(tmp_path: Path) -> None:
    from graph.settings import private_dir

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    assert stat.S_IMODE(os.stat(private_dir(loose)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(private_dir(tmp_path / "a" / "b")).st_mode) == 0o700
