"""Under torch.distributed (gloo, 2 CPU ranks) the probe equals the single-process run."""

import os
import socket

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
        ci = probe.classification_images(_model(), stimuli.WhiteNoise((1, 7, 7)), n, batch_size=bs,
                                         seed=11, progress=False)
        ci.save(os.path.join(out, f"rank{rank}.pt"))
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
    for rank in range(2):
        r = probe.ClassificationImages.load(tmp_path / f"rank{rank}.pt")
        assert r.n == n
        assert torch.equal(r.count, single.count)
        ok = single.count > 0
        assert torch.allclose(r.mean[ok], single.mean[ok], rtol=0, atol=1e-12)
