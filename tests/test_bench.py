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


def test_a_small_benchmark_run_reports_identical_predictions(capsys):
    """An untrained CNN (near-tied logits: the hardest case for the fast paths), no training."""
    torch.manual_seed(0)
    net = models.MnistCNN().eval()
    res = bench.bench_probe(n=4096, n_ref=4096, rss=False, compile_=False, onnx=False, n_check=4096,
                            batch_size=1024, model=net)
    assert res["identical_to_plain"] == {"none": True}
    assert res["flops_per_image"] == 4_586_000
    # the printed table holds the measured figures, not just labels
    out = capsys.readouterr().out
    assert f"{res['reference_img_s']:8,.0f} img/s" in out
    assert f"{res['probe_none_img_s']:8,.0f} img/s" in out
    assert "same counts and sums as the plain fp32 model (4,096 images): none yes" in out


@pytest.mark.slow
def test_the_onnx_rows_report_identical_predictions(capsys):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    res = bench.bench_probe(n=4096, n_ref=4096, rss=False, compile_=False, onnx=True, n_check=2048,
                            batch_size=1024, model=models.MnistCNN().eval())
    assert res["identical_to_plain"] == {"none": True, "onnx": True}
    assert res["onnx_s"] > 0 and res["probe_onnx_steady_img_s"] > 0


def test_precision_benchmark_counts_changed_predictions(capsys):
    torch.manual_seed(0)
    net = models.MnistCNN().eval()
    threads = torch.get_num_threads()
    res = bench.bench_precision(n=1024, model=net)
    assert torch.get_num_threads() == threads  # restored
    bf = res["bfloat16 autocast"]
    # untrained logits are nearly tied: bf16's 8-bit mantissa must flip some predictions, not all
    assert 0 < bf["changed"] < 1024
    out = capsys.readouterr().out
    assert f"predictions changed: {bf['changed']:,} of 1,024" in out


def test_peak_rss_is_the_child_process_own():
    parent = torch.ones(400 * 2**20 // 4 * 3)  # 1.2 GiB here: a child's ru_maxrss would count it
    parent.add_(1)
    small = bench.peak_rss(2_000, trained=False)
    assert 200 < small < 1_100, small  # torch alone is about 500 MiB
    del parent


def test_torchvision_models_run_the_fast_path_and_agree(capsys):
    """Fresh torchvision models (train mode, BatchNorm, depthwise convolutions, tiny untrained logits)."""
    pytest.importorskip("torchvision")
    res = bench.bench_models(n=256, sizes=(32,), names=("resnet18", "mobilenet_v3_small"), onnx=False)
    for name in ("resnet18", "mobilenet_v3_small"):
        fast = res[(name, 32, "fast")]
        assert fast["fast_path"] == "eager" and not fast["warned"], (name, fast)
        assert fast["same"] and res[(name, 32, "plain")]["fast_path"] is None
    out = capsys.readouterr().out
    assert f"{res[('resnet18', 32, 'fast')]['img_s']:7,.0f}" in out


def test_gabor_benchmark_reports_the_fit(capsys, mnist_available):
    """A small fit in this process: the figures it prints are the fitted object's."""
    res = bench.bench_gabor("mnist", 20, 400, n_samples=2_000, n_test=200, subprocess=False, progress=False)
    assert res["images"] == 400 and res["wavelets"] == 960 and res["components"] == 20
    assert 0.5 < res["variance_kept"][0] < 1 and res["peak_rss_mib"] >= res["rss_before_fit_mib"] > 0
    assert 0 < res["test_rel_l2"]["ridge"] < res["test_rel_l2"]["through_pca"] < 1
    out = capsys.readouterr().out
    assert f"variance kept per channel: {100 * res['variance_kept'][0]:.2f}%" in out
    assert f"{res['sample_img_s']:,.0f} img/s" in out


def test_wna_bench_gabor_parses_its_options():
    from wna import cli

    args = cli._parser().parse_args(["bench", "gabor", "--dataset", "cifar10", "--components", "600", "--images", "10"])
    assert (args.what, args.dataset, args.components, args.images) == ("gabor", "cifar10", 600, 10)


def test_tables_of_the_benchmark_figures():
    """Known answers: rates over the reference's, rows in order, skipped rows left out."""
    res = {"reference_img_s": 1000.0, "reference_gflops": 4.0, "probe_none_img_s": 3000.0, "probe_none_gflops": 12.0,
           "probe_onnx_steady_img_s": 2500.0, "probe_onnx_steady_gflops": 10.0}
    t = bench.probe_table(res)
    assert list(t.index) == ["reference", "probe_none", "probe_onnx_steady"]
    assert t["x_reference"].tolist() == [1.0, 3.0, 2.5] and t.loc["probe_none", "gflops"] == 12.0
    out = {("resnet18", 32, "plain"): {"img_s": 100.0, "ratio": 1.0, "setup_s": 0.1, "fast_path": "off", "same": True},
           ("resnet18", 32, "fast"): {"img_s": 250.0, "ratio": 2.5, "setup_s": 0.5, "fast_path": "eager",
                                      "same": False}}
    m = bench.models_table(out)
    assert m["x_plain"].tolist() == [1.0, 2.5] and m["same_as_plain"].tolist() == [True, False]
    assert m.loc[1, "variant"] == "fast" and m.loc[1, "fast_path"] == "eager"


def test_benchmark_models_of_its_own_list_are_untrained_and_need_no_download():
    """squeezenet1_1 and googlenet are also pretrained backbones (Table 1); the benchmark's are not."""
    from wna.bench.models import MODELS, build
    for name in ("squeezenet1_1", "googlenet"):
        assert name in MODELS
        m = build(name)
        assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
