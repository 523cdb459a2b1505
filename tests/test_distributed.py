"""Under torch.distributed (gloo, 2 CPU ranks) the probe equals the single-process run."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wna import probe, stimuli


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, 10))


def _worker(rank, world, port, out, n, bs):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for attempt in ("first", "resumed"):  # the second call finds each rank's finished checkpoint
            ci = probe.classification_images(_model(), stimuli.WhiteNoise((1, 7, 7)), n, batch_size=bs,
                                             seed=11, progress=False, checkpoint=os.path.join(out, "ck.pt"))
            ci.save(os.path.join(out, f"rank{rank}-{attempt}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_equal_single_process(tmp_path):
    n, bs = 30_500, 1000  # 31 batches: the ranks get 16 and 15, the last one short
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), n, bs), nprocs=2, join=True)
    single = probe.classification_images(_model(), stimuli.WhiteNoise((1, 7, 7)), n, batch_size=bs,
                                         seed=11, progress=False)
    assert sorted(p.name for p in tmp_path.glob("ck*")) == ["ck.rank0-of-2.pt", "ck.rank1-of-2.pt"]
    for rank in range(2):
        for attempt in ("first", "resumed"):
            r = probe.ClassificationImages.load(tmp_path / f"rank{rank}-{attempt}.pt")
            assert r.n == n
            assert torch.equal(r.count, single.count)
            ok = single.count > 0
            assert torch.allclose(r.mean[ok], single.mean[ok], rtol=0, atol=1e-12)
            assert r.meta["resumed_batches"] == (0 if attempt == "first" else 31)  # 16 + 15 over the ranks


@pytest.mark.slow
def test_torchrun_cli_equals_single_process(tmp_path, mnist_available):
    """`torchrun --nproc_per_node=2 -m wna probe` gives the single-process result."""
    import subprocess
    import sys
    from pathlib import Path

    args = ["probe", "--model", "mnist_cnn", "--epochs", "1", "--n-train", "500",
            "--n-samples", "20000", "--batch-size", "1000", "--seed", "3", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "wna", *args, "--out", str(tmp_path / "one.pt")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    multi = subprocess.run([str(torchrun), "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "wna",
                            *args, "--out", str(tmp_path / "two.pt")],
                           capture_output=True, text=True, env=env, timeout=600)
    assert multi.returncode == 0, multi.stderr[-2000:]
    assert "on 2 process(es)" in multi.stdout
    one = probe.ClassificationImages.load(tmp_path / "one.pt")
    two = probe.ClassificationImages.load(tmp_path / "two.pt")
    assert one.n == two.n == 20000
    assert torch.equal(one.count, two.count)
    ok = one.count > 0
    assert torch.allclose(one.mean[ok], two.mean[ok], rtol=0, atol=1e-12)
    assert one.meta["rechecked"] == two.meta["rechecked"]  # counted over both ranks
