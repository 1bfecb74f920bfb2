"""Data-parallel training (``gnn.distributed``, PyKEEN's Lightning DDP path, ``attrgraph train --nproc``) on
real processes: two ranks over gloo on loopback, launched by torch's own launcher. Never skipped under
CI=true (``tests._deps.need`` fails instead). About two minutes on two cores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests._deps import need

need("torch")
need("torch_geometric")
need("pytorch_lightning")

from gnn.distributed import DistContext, in_launched_rank, rank_share, threads_per_rank  # noqa: E402
from gnn.kge import shard_rows  # noqa: E402
from tests.test_gnn_model import brand_catalog  # noqa: E402
from tests.test_protocol import write_snapshot  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900  # seconds for a launch: the machine is shared, a hang fails the test instead of the suite


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(k, None)  # (a test run inside a launched job must not look like a rank itself)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def snap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("dist") / "snap", brand_catalog(240))


@pytest.fixture(scope="module")
def two_nodes(snap_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """tests/_dist_worker.py on 2 ranks launched as two ``--nnodes=2`` agents (c10d rendezvous on 127.0.0.1)."""
    out = tmp_path_factory.mktemp("ranks")
    port, run_id = _free_port(), uuid.uuid4().hex[:8]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={run_id}", "--max-restarts=0",
           str(ROOT / "tests" / "_dist_worker.py"), str(out), str(snap_dir)]
    logs = [open(out / f"agent{i}.log", "w") for i in range(2)]
    agents = [subprocess.Popen(cmd, env=_env(), stdout=f, stderr=subprocess.STDOUT, cwd=ROOT) for f in logs]
    try:
        codes = [a.wait(timeout=TIMEOUT) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
        for f in logs:
            f.close()
    tail = "\n".join((out / f"agent{i}.log").read_text()[-3000:] for i in range(2))
    assert codes == [0, 0], tail
    return {r: (np.load(out / f"rank{r}.npz"), json.loads((out / f"rank{r}.json").read_text())) for r in (0, 1)}


def test_step0_averaged_gradient_is_the_one_process_gradient_on_the_combined_batch(two_nodes: dict) -> None:
    (a, ma), (b, mb) = two_nodes[0], two_nodes[1]
    assert ma["world_size"] == mb["world_size"] == 2 and ma["backend"] == "gloo"
    assert ma["threads"] == threads_per_rank(1)  # one rank per agent: the host's cores
    ref = a["single_step0"]
    assert np.abs(ref).max() > 1e-3  # a real gradient, not zeros
    assert np.abs(a["sync_grads"][0] - ref).max() <= 1e-6
    assert np.abs(b["sync_grads"][0] - ref).max() <= 1e-6


def test_gradients_equal_at_every_step_and_parameters_at_the_end(two_nodes: dict) -> None:
    (a, ma), (b, mb) = two_nodes[0], two_nodes[1]
    assert ma["steps"] == mb["steps"] >= 4 and ma["epochs_run"] == 2  # equal step counts: nothing waited
    assert a["sync_grads"].shape == b["sync_grads"].shape
    assert np.abs(a["sync_grads"] - b["sync_grads"]).max() <= 1e-6
    assert np.abs(a["sync_params"] - b["sync_params"]).max() <= 1e-6
    assert ma["distributed"]["world_size"] == 2 and ma["selection_rank0"] is True  # select_by_valid ran on rank 0
    # the loss recorded is the mean over both ranks' pairs (all-reduced), the evaluation rank 0's alone
    assert [h["loss"] for h in mb["history"]] == pytest.approx([h["loss"] for h in ma["history"]], abs=1e-9)
    assert all("valid_hits@1" in h for h in ma["history"]) and not any("valid_hits@1" in h for h in mb["history"])


def test_the_no_sync_control_differs(two_nodes: dict) -> None:
    """Without the all-reduce the ranks' gradients and parameters part: the equality above is DDP's doing."""
    a, b = two_nodes[0][0], two_nodes[1][0]
    assert np.abs(a["nosync_grads"][0] - b["nosync_grads"][0]).max() > 1e-3
    assert np.abs(a["nosync_params"] - b["nosync_params"]).max() > 1e-3


def test_pykeen_lightning_ddp_trains_each_rank_on_a_disjoint_shard(two_nodes: dict) -> None:
    (a, ma), (b, _) = two_nodes[0], two_nodes[1]
    sa, sb = {tuple(x) for x in a["kge_seen"].tolist()}, {tuple(x) for x in b["kge_seen"].tolist()}
    assert sa and sb and not (sa & sb)
    assert len(sa) + len(sb) == ma["kge_triples"]  # together: every triple
    assert ma["kge_batch_size"] == 32  # 64 // 2 ranks
    assert np.abs(a["kge_emb"] - b["kge_emb"]).max() <= 1e-6  # one model on both ranks


def test_train_nproc_2_end_to_end_saves_a_loadable_model(snap_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "attrgraph.cli", "train", "--nproc", "2", "--snapshot", str(snap_dir), "--out", str(out),
           "--option", "text_feature=null", "--option", "epochs=3", "--option", "hidden=16", "--option", "batch_size=64"]
    res = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "training on 2 ranks" in res.stdout and "2 (gloo" in res.stdout
    from gnn.completion import CompletionPredictor
    from gnn.snapshot import load_snapshot

    pred = CompletionPredictor.load(out)
    assert pred.model.distributed["world_size"] == 2 and pred.model.epochs_run >= 1
    assert pred.snapshot_fingerprint == load_snapshot(snap_dir).fingerprint
    p = pred.model._score_attribute(pred.split.attribute_id("colour"), np.arange(20))  # the model scores
    assert p.shape == (20, 4) and np.allclose(p.sum(1), 1.0)


def test_sharding_helpers() -> None:
    # GNN: every product of a global batch goes to exactly one rank; a rank left without one pads with weight 0
    chunk = np.array([9, 3, 7, 1, 5])
    parts = [rank_share(chunk, r, 2) for r in range(2)]
    assert sorted(np.concatenate([p for p, _ in parts]).tolist()) == sorted(chunk.tolist())
    mine, pad = rank_share(np.array([4]), 1, 2)
    assert pad and mine.tolist() == [4]
    assert rank_share(np.array([4]), 0, 2)[1] is False
    # KGE: equal shard sizes (equal step counts), disjoint as sets, covering every row
    rows = [shard_rows(11, r, 3) for r in range(3)]
    assert {len(r) for r in rows} == {4}
    assert sorted(set().union(*[set(r.tolist()) for r in rows])) == list(range(11))
    assert not (set(rows[0].tolist()) & set(rows[1].tolist()))


def test_a_lone_process_is_not_a_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "SLURM_NTASKS", "MASTER_ADDR"):
        monkeypatch.delenv(k, raising=False)
    assert not in_launched_rank()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert in_launched_rank()
    assert DistContext(rank=0, world_size=2).is_main and not DistContext(rank=1, world_size=2).is_main
