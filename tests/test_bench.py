"""The benchmark's pieces: FLOP count, the authors' reference loop, and one small run."""

import pytest
import torch

from wna import bench, models


def test_forward_flops_of_the_mnist_cnn():
    # conv1 24*24*20*25 + conv2 8*8*50*500 + fc1 800*500 + fc2 500*10 multiply-adds, 2 FLOPs each
    assert bench.forward_flops(models.MnistCNN(), (1, 28, 28)) == 2 * (288_000 + 1_600_000 + 400_000 + 5_000)


class Constant(torch.nn.Module):
    """Equal logits for every class: softmax 1/C, argmax class 0."""

    def forward(self, x):
        return torch.zeros(len(x), 4)


def test_reference_loop_is_the_authors_per_batch_weighted_mean():
    out = bench.reference_probe(Constant(), 3000, shape=(5,), batch_size=1000, seed=7)
    torch.manual_seed(7)
    batches = [torch.rand(1000, 5) for _ in range(3)]
    want = torch.stack([b.mean(0) / 4 for b in batches]).mean(0)  # confidence 1/4, all to class 0
    assert torch.allclose(out[0], want, atol=1e-6)
    assert torch.equal(out[1:], torch.zeros(3, 5))  # the absent classes stay 0 (the authors' bias)


def test_a_small_benchmark_run_reports_identical_predictions(mnist_available, capsys):
    res = bench.bench_probe(n=8192, n_ref=10_000, rss=False, compile_=False, n_check=4096)
    assert res["identical_to_plain"] == {"none": True, "onnx": True}
    assert res["probe_onnx_steady_img_s"] > res["probe_onnx_img_s"] > 0  # less its export time
    assert res["reference_img_s"] > 0 and res["probe_none_img_s"] > 0
    assert res["flops_per_image"] == 4_586_000
    out = capsys.readouterr().out
    assert "reference loop" in out and "x" in out and "same counts and sums" in out


def test_reduced_precision_benchmark_runs(mnist_available, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "reduced_precision.py"
    spec = importlib.util.spec_from_file_location("reduced_precision", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    mod.main(["--n", "1024"])
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    assert "fp32" in out and "bfloat16 autocast" in out and "predictions changed" in out


def test_peak_rss_is_the_child_process_own(mnist_available):
    parent = torch.ones(400 * 2**20 // 4 * 3)  # 1.2 GiB here: a child's ru_maxrss would count it
    parent.add_(1)
    small = bench.peak_rss(2_000)
    assert 200 < small < 1_100, small  # torch alone is about 500 MiB
    del parent
