import json
import os
import subprocess
import sys
import threading

import pytest
import torch
import yaml

from conftest import ROOT
from wna import paths, training, zoo


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch, mnist_available):
    monkeypatch.setenv("WNA_CACHE", str(tmp_path))
    cfg = dict(epochs=1, n_train=1000, seed=3)
    a = zoo.load("mnist_cnn", progress=False, **cfg)
    path = zoo.checkpoint_path("mnist_cnn", **cfg)
    assert path.is_file() and path.parent == tmp_path
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left no temporary file
    stamp = path.stat().st_mtime_ns
    b = zoo.load("mnist_cnn", progress=False, **cfg)  # from the cache
    assert path.stat().st_mtime_ns == stamp
    assert _same_weights(a, b) and a.test_accuracy == b.test_accuracy
    c = zoo.load("mnist_cnn", progress=False, retrain=True, **cfg)  # trained again from scratch
    assert _same_weights(a, c)
    # 1,000 images, one epoch: far above chance (10%)
    assert 0.5 < a.test_accuracy < 1.0
    # another config has another checkpoint
    assert zoo.checkpoint_path("mnist_cnn", epochs=1, n_train=1000, seed=4) != path



def test_a_model_being_trained_elsewhere_is_waited_for_not_trained_twice(tmp_path, monkeypatch,
                                                                        mnist_available):
    """Two notebooks run side by side that need one model: the second reads the first's checkpoint."""
    monkeypatch.setenv("WNA_CACHE", str(tmp_path))
    cfg = dict(epochs=1, n_train=500, seed=5)
    first = zoo.load("mnist_logreg", progress=False, **cfg)
    path = zoo.checkpoint_path("mnist_logreg", **cfg)
    saved = path.read_bytes()
    path.unlink()

    def trained_again(*args, **kwargs):
        raise AssertionError("trained a model whose checkpoint another process was writing")

    monkeypatch.setattr(zoo, "train", trained_again)
    got, errors = {}, []

    def second():
        try:
            got["model"] = zoo.load("mnist_logreg", progress=False, **cfg)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with paths.cache_lock(path):  # "another process" is training it
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and not errors  # it waits on the lock
        path.write_bytes(saved)  # the other process's checkpoint lands
    waiter.join(60)
    assert not errors, errors
    assert _same_weights(first, got["model"]) and got["model"].test_accuracy == first.test_accuracy


# Trains in a fresh process started with a given thread setting; prints the weights' hash.
_TRAIN_SCRIPT = """
import hashlib, json, sys, torch
n = int(sys.argv[1])
if n:
    torch.set_num_threads(n)
from wna import zoo
before = torch.get_num_threads()
m = zoo.load("mnist_cnn", progress=False, epochs=1, n_train=1000, seed=3)
h = hashlib.sha256()
for v in m.state_dict().values():
    h.update(v.contiguous().numpy().tobytes())
print(json.dumps({"sha256": h.hexdigest(), "before": before, "after": torch.get_num_threads(),
                  "record": {k: v for k, v in m.record.items() if k != "history"}}))
"""


def test_weights_do_not_depend_on_the_thread_count(tmp_path, mnist_available):
    """Same weights whether the process runs on 1 or 3 torch threads or starts with OMP_NUM_THREADS=1."""
    runs = {}
    for label, threads, extra in [("1", 1, {}), ("3", 3, {}), ("omp1", 0, {"OMP_NUM_THREADS": "1"})]:
        env = {**os.environ, "WNA_CACHE": str(tmp_path / label), **extra,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        if not extra:
            env.pop("OMP_NUM_THREADS", None)
        proc = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, str(threads)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["1"]["sha256"] == runs["3"]["sha256"] == runs["omp1"]["sha256"]
    assert runs["1"]["record"]["test_accuracy"] == runs["3"]["record"]["test_accuracy"]
    for label, want in [("1", 1), ("3", 3), ("omp1", 1)]:
        assert runs[label]["before"] == runs[label]["after"] == want  # the caller's count is restored
    rec = runs["1"]["record"]
    assert rec["threads"] == zoo.TRAIN_THREADS and rec["torch"] == torch.__version__
    assert rec["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert rec["python"] and rec["machine"] and "cpu" in rec


def test_thread_count_is_restored_on_error_and_keys_the_cache(monkeypatch):
    seen = []

    def broken(train=True):
        seen.append(torch.get_num_threads())
        raise RuntimeError("no data")

    monkeypatch.setitem(zoo.DATASETS, "mnist", broken)
    before = torch.get_num_threads()
    for n in {1, 3}:
        torch.set_num_threads(n)
        try:
            with pytest.raises(RuntimeError, match="no data"):
                zoo.train(zoo.recipe("mnist_cnn", epochs=1))
            assert torch.get_num_threads() == n
        finally:
            torch.set_num_threads(before)
    assert seen == [zoo.TRAIN_THREADS] * 2
    path = zoo.checkpoint_path("mnist_cnn", epochs=1)
    monkeypatch.setattr(zoo, "TRAIN_THREADS", zoo.TRAIN_THREADS + 1)
    assert zoo.checkpoint_path("mnist_cnn", epochs=1) != path


def test_bad_config():
    with pytest.raises(ValueError, match="unknown model"):
        zoo.load("mnist_resnet")
    with pytest.raises(ValueError, match="unknown option"):
        zoo.load("mnist_cnn", epoch=3)
    with pytest.raises(ValueError, match="invalid"):
        zoo.load("mnist_cnn", epochs=0)


@pytest.mark.slow
def test_ci_profile_models_reach_the_issue_accuracies(mnist_available):
    """At the ci profile's epochs: CNN >= 99.0% (paper 99.2%), logistic regression >= 92% (paper 92.46%).

    Uses the shared cache, so `make book` reuses these models.
    """
    ci = yaml.safe_load((ROOT / "notebooks" / "profiles" / "ci.yml").read_text())["fig02_mnist_bias_maps"]
    cnn = zoo.load("mnist_cnn", epochs=ci["cnn_epochs"], progress=False)
    lr = zoo.load("mnist_logreg", epochs=ci["logreg_epochs"], progress=False)
    assert cnn.test_accuracy >= 0.990
    assert lr.test_accuracy >= 0.92
    # the stored accuracy is the model's real accuracy
    from wna import data
    xt, yt = data.mnist(train=False)
    assert zoo.evaluate(cnn, xt, yt) == cnn.test_accuracy


def test_random_crop_flip_known_answer():
    """Each image is its zero-padded copy cropped at the drawn offset, mirrored when drawn."""
    n, h, w, pad = 400, 5, 6, 4
    x = torch.zeros(n, 2, h, w)
    x[:, 0, 2, 1] = 1.0  # one bright pixel in channel 0 at row 2, column 1
    x[:, 1] = torch.arange(h * w, dtype=torch.float32).reshape(h, w) + 1  # channel 1: a ramp
    out = zoo.random_crop_flip(x, torch.Generator().manual_seed(5), padding=pad)
    assert out.shape == x.shape and out.is_contiguous()
    assert torch.equal(out, zoo.random_crop_flip(x, torch.Generator().manual_seed(5), padding=pad))
    assert not torch.equal(out, zoo.random_crop_flip(x, torch.Generator().manual_seed(6), padding=pad))
    g = torch.Generator().manual_seed(5)  # the documented draw order: row offsets, column offsets, flips
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    flip = torch.randint(0, 2, (n,), generator=g).bool()
    assert set(dy.tolist()) == set(range(9)) == set(dx.tolist()) and 0 < int(flip.sum()) < n
    for i in range(n):
        r, c = 2 + pad - int(dy[i]), 1 + pad - int(dx[i])  # where the bright pixel lands before the flip
        if flip[i]:
            c = w - 1 - c
        want = torch.zeros(h, w)
        if 0 <= r < h and 0 <= c < w:
            want[r, c] = 1.0
        assert torch.equal(out[i, 0], want), i
        # the ramp: the same crop of the padded image, mirrored when drawn
        ref = torch.nn.functional.pad(x[i, 1], (pad,) * 4)[dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        assert torch.equal(out[i, 1], ref.flip(1) if flip[i] else ref), i
    # offset (pad, pad) without a flip is the identity
    same = (dy == pad) & (dx == pad) & ~flip
    assert same.any() and torch.equal(out[same], x[same])


def test_cifar_recipe_options(monkeypatch):
    paths = {}
    for source in ("official", "mirror-jpeg-q75"):  # the copy of the data keys the checkpoint
        monkeypatch.setattr(zoo.data, "cifar10_source", lambda download=None, s=source: s)
        paths[source] = zoo.checkpoint_path("cifar_cnn")
    assert paths["official"] != paths["mirror-jpeg-q75"]
    r = zoo.recipe("cifar_cnn", epochs=1, width=0.25, activation="tanh")
    assert (r.dataset, r.augment, r.batch_size, r.width, r.activation) == ("cifar10", True, 128, 0.25, "tanh")
    m = training.build(r)
    assert m.conv1[0].out_channels == 8 and isinstance(m.conv1[2], torch.nn.Tanh)
    assert zoo.checkpoint_path("cifar_cnn", width=1) == zoo.checkpoint_path("cifar_cnn", width=1.0)
    assert zoo.checkpoint_path("cifar_cnn", width=0.5) != zoo.checkpoint_path("cifar_cnn")
    with pytest.raises(ValueError, match="only for cifar_cnn"):
        zoo.load("mnist_cnn", width=0.5)
    with pytest.raises(ValueError, match="invalid width"):
        zoo.load("cifar_cnn", activation="gelu")


def test_cifar_training_is_deterministic(tmp_path, monkeypatch, cifar10_available):
    """Dropout masks and augmentation are seeded too: retraining gives bitwise the same weights."""
    from wna import data
    x, y = data.cifar10(train=True)
    xt, yt = data.cifar10(train=False)
    small = {True: (x[:1024], y[:1024]), False: (xt[:1000], yt[:1000])}  # 100 test images per class
    monkeypatch.setitem(zoo.DATASETS, "cifar10", lambda train=True: small[train])
    monkeypatch.setenv("WNA_CACHE", str(tmp_path))
    cfg = dict(epochs=1, batch_size=16, width=0.25, seed=2)
    before = torch.random.get_rng_state()
    a = zoo.load("cifar_cnn", progress=False, **cfg)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's global generator is untouched
    b = zoo.load("cifar_cnn", progress=False, retrain=True, **cfg)
    assert _same_weights(a, b) and a.test_accuracy == b.test_accuracy
    assert a.conv1[0].out_channels == 8 and not a.training
    assert a.record["data"] == data.cifar10_source() and a.record["history"][0]["elapsed_seconds"] > 0
    assert 0.15 < a.test_accuracy < 0.5  # 1,024 images, one epoch: above chance (10%)
    c = zoo.load("cifar_cnn", progress=False, **cfg)  # from the cache, the caller's generator untouched
    assert _same_weights(a, c) and torch.equal(torch.random.get_rng_state(), before)


# The CIFAR-10 CNN's ci setting: about 2 minutes on 2 CPU cores (width 0.25: 27 s per epoch with
# its test pass; 52%, 62%, 66%, 69% test accuracy after epochs 1-4 on the JPEG mirror, seed 1).
CIFAR_CI = dict(width=0.25, epochs=4)


@pytest.mark.slow
def test_cifar_ci_setting_reaches_its_accuracy(cifar10_available):
    """The ci setting reaches >= 64% test accuracy (69% measured; the paper's full-width model 82%).

    Uses the shared cache, so the book reuses this model.
    """
    m = zoo.load("cifar_cnn", progress=False, **CIFAR_CI)
    assert m.test_accuracy >= 0.64
    assert [h["epoch"] for h in m.record["history"]] == [1, 2, 3, 4]
    from wna import data
    xt, yt = data.cifar10(train=False)
    assert zoo.evaluate(m, xt, yt) == m.test_accuracy  # the stored accuracy is the model's real one
