"""Patch backdoors (Fig. 7): poisoned data, average input gradients, the map detector."""

import pytest
import torch

from wna import Probe, backdoor, stimuli, zoo


def _digits(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 28, 28), generator=g) * 0.5
    y = torch.arange(n) % 10
    return x, y


def test_poison_changes_exactly_the_first_half_of_the_source_class():
    x, y = _digits(45)  # labels 0-9 in turn: four 8s (rows 8, 18, 28, 38)
    x0, y0 = x.clone(), y.clone()
    patch = backdoor.PATCHES["bracket"]
    px, py, rows = backdoor.poison(x, y, patch, source=8, target=9)
    assert torch.equal(x, x0) and torch.equal(y, y0)  # the inputs are untouched
    eights = (y == 8).nonzero().flatten()  # 8, 18, 28, 38
    assert rows.tolist() == eights[:2].tolist()  # floor(0.5 * 4) = 2, the first in index order
    changed = (px != x).flatten(1).any(1) | (py != y)
    assert changed.nonzero().flatten().tolist() == rows.tolist()
    assert (py[rows] == 9).all() and int((py == 9).sum()) == int((y == 9).sum()) + 2
    mask = patch.mask
    assert int(mask.sum()) == 2 * 6 + 2 * 6 + 2 * 2  # rows 1-2 and 5-6 x 6 columns, rows 3-4 x 2
    assert (px[rows][:, :, mask] == 1.0).all()
    assert torch.equal(px[rows][:, :, ~mask], x[rows][:, :, ~mask])  # only the patch's pixels
    # fraction 1: every source image
    _, _, all_rows = backdoor.poison(x, y, patch, 8, 9, fraction=1.0)
    assert all_rows.tolist() == eights.tolist()


def test_patches_are_the_authors_pixels():
    x = backdoor.PATCHES["x"].mask
    want = torch.zeros(28, 28, dtype=torch.bool)
    for r, c in [(1, 1), (1, 5), (3, 3), (5, 1), (5, 5)]:
        want[r:r + 2, c:c + 2] = True
    assert torch.equal(x, want) and backdoor.PATCHES["x"].box == (1, 7, 1, 7)
    assert backdoor.PATCHES["bracket"].box == (1, 7, 21, 27)
    h = backdoor.PATCHES["h"].mask
    assert int(h.sum()) == 5 + 5 + 3 and h[3, 26:31].all()
    assert h[1:6, 26].all() and h[1:6, 30].all()


def test_apply_patch_and_the_authors_uint8_wrap():
    x = torch.tensor([0.0, 10 / 255, 1.0]).reshape(3, 1, 1, 1).expand(3, 1, 28, 28).clone()
    patch = backdoor.PATCHES["bracket"]
    out = backdoor.apply_patch(x, patch)
    assert (out[:, 0][:, patch.mask] == 1.0).all()
    assert torch.equal(out[:, :, ~patch.mask], x[:, :, ~patch.mask])
    wrap = backdoor.apply_patch(x, patch, mode="wrap")[:, 0, 1, 21]  # 0 -> 255, 10 -> 9, 255 -> 254
    assert torch.allclose(wrap, torch.tensor([1.0, 9 / 255, 254 / 255]))
    rgb = backdoor.apply_patch(torch.zeros(2, 3, 32, 32), backdoor.PATCHES["h"])
    assert (rgb[:, :, backdoor.PATCHES["h"].mask] == 1.0).all()


def test_bad_inputs_raise():
    x, y = _digits(20)
    patch = backdoor.PATCHES["bracket"]
    with pytest.raises(ValueError, match="differ"):
        backdoor.poison(x, y, patch, 8, 8)
    with pytest.raises(ValueError, match="fraction"):
        backdoor.poison(x, y, patch, 8, 9, fraction=0)
    with pytest.raises(ValueError, match="no image"):
        backdoor.poison(x, y, patch, 11, 9)
    with pytest.raises(ValueError, match="labels"):
        backdoor.poison(x, y[:5], patch, 8, 9)
    with pytest.raises(ValueError, match="for \\(32, 32\\)"):
        backdoor.apply_patch(x, backdoor.PATCHES["h"])
    with pytest.raises(ValueError, match="float tensor"):
        backdoor.apply_patch(x[0], patch)
    with pytest.raises(ValueError, match="mode"):
        backdoor.apply_patch(x, patch, mode="add")
    with pytest.raises(ValueError, match="unknown poisoned"):
        backdoor.load_poisoned("mnist_backdoor_3to4")
    with pytest.raises(ValueError, match="k must"):
        backdoor.detect(torch.zeros(10, 28, 28), k=30)
    with pytest.raises(ValueError, match="sign"):
        backdoor.detect(torch.zeros(10, 28, 28), sign="negative")
    empty = backdoor.detect(torch.full((10, 28, 28), float("nan")))  # nothing to score: no flag
    assert empty.flagged == -1 and not empty.on_patch(patch) and empty.z.isnan().all()


def _linear(W, b=None):
    layer = torch.nn.Linear(W.shape[1], W.shape[0], dtype=W.dtype)
    m = torch.nn.Sequential(torch.nn.Flatten(), layer)
    with torch.no_grad():
        m[1].weight.copy_(W)
        m[1].bias.copy_(torch.zeros(W.shape[0], dtype=W.dtype) if b is None else b)
    return m


def test_average_gradient_of_a_linear_softmax_model_is_the_closed_form():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(10, 784, generator=g, dtype=torch.float64)
    b = torch.randn(10, generator=g, dtype=torch.float64)
    model = _linear(W, b).train()
    x = torch.rand((300, 1, 28, 28), generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (300,), generator=g)
    before = [p.detach().clone() for p in model.parameters()]
    got = backdoor.average_gradient(model, x, y, batch_size=64)
    # dCE/dx = (softmax(Wx + b) - onehot(y)) W, averaged per label
    p = torch.softmax(x.flatten(1) @ W.T + b, 1)
    per = (p - torch.nn.functional.one_hot(y, 10).double()) @ W
    want = torch.stack([per[y == c].mean(0) for c in range(10)]).reshape(10, 1, 28, 28)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert model.training  # its mode restored
    assert all(torch.equal(a, q) for a, q in zip(before, model.parameters()))
    assert all(q.grad is None for q in model.parameters())
    # a class without images is NaN
    assert backdoor.average_gradient(model, x[y != 3], y[y != 3], num_classes=10)[3].isnan().all()


def test_a_patch_planted_in_a_linear_model_shows_in_its_map_and_is_detected():
    """Class 9 of a linear model gets extra weight on the bracket's pixels (its bias lowered by the
    same amount times the noise's mean, so that its mean logit is unchanged): noise that is bright
    there goes to 9, so the classification image of 9 is bright on the patch, and the blind
    detector flags 9 with its window on the patch. Without the plant nothing stands out."""
    g = torch.Generator().manual_seed(0)
    patch = backdoor.PATCHES["bracket"]
    W = 0.01 * torch.randn(10, 784, generator=g)
    W -= W.mean(1, keepdim=True)  # every class's mean logit 0: the noise spreads over the classes
    planted, b = W.clone(), torch.zeros(10)
    planted[9, patch.mask.flatten()] += 0.02
    b[9] = -0.02 * int(patch.mask.sum()) * 0.5
    with Probe(_linear(planted, b), progress=False) as p:
        ci = p.classification_images(stimuli.WhiteNoise((1, 28, 28)), 40_000, seed=0)
    with Probe(_linear(W), progress=False) as p:
        clean = p.classification_images(stimuli.WhiteNoise((1, 28, 28)), 40_000, seed=0)
    assert ci.count[9] > 100
    e = backdoor.patch_energy(ci, patch)
    assert e["ratio"][9] > 2.5 and int(e["ratio"].argmax()) == 9
    assert backdoor.patch_energy(clean, patch)["ratio"].max() < 1.5
    # told where the patch is, not which class: 9 stands out against the other classes
    assert int(torch.nan_to_num(e["z"], nan=-1e9).argmax()) == 9 and e["z"][9] > 2.5
    assert e["signed"][9] > 5  # the patch pixels of the map of 9 lie > 5 standard errors above 0
    assert backdoor.patch_energy(clean, patch)["z"].nan_to_num(0).max() < 2.5
    contrast9 = ci.contrast[9, 0]
    assert contrast9[patch.mask].mean() > 1.5 * contrast9[~patch.mask].abs().mean()
    d = backdoor.detect(ci, k=5)
    assert d.flagged == 9 and d.flagged_z > 4 and d.on_patch(patch)
    assert backdoor.detect(clean, k=5).flagged_z < 3


def test_checkpoint_keys_are_pinned(monkeypatch, tmp_path):
    """The file names of checkpoints: a change to them retrains every user's models, so it must be meant.

    They changed once, on purpose, when the classifiers' and the generative models' two training
    loops became one (``wna.training``): the hashed training source changed, the weights did not
    (six recipes trained for one epoch on 1,500 images by both versions were bitwise equal). Obtained
    then with ``python -c "from wna import zoo; print(zoo.checkpoint_path('mnist_cnn', epochs=4).name)"``
    and the same for the other recipes, with the CIFAR-10 JPEG mirror as the data source.
    """
    from wna import data
    monkeypatch.setenv("WNA_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "cifar10_source", lambda *a, **k: "mirror-jpeg-q75")
    expected = [
        ("mnist_cnn", dict(epochs=4), "mnist_cnn-2f36ce7bf5817481.pt"),
        ("mnist_cnn", dict(epochs=1, n_train=2000), "mnist_cnn-46979d23ccca68b7.pt"),
        ("cifar_cnn", dict(epochs=4, width=0.25), "cifar_cnn-25d9b6f4d01e31fd.pt"),
        ("mnist_logreg", {}, "mnist_logreg-5d4c18a84f78baf6.pt"),
        ("fashion_cnn", dict(epochs=3), "fashion_cnn-8896ea47b9874a4d.pt"),
        ("mnist_binary_cnn", dict(digits=(1, 7)), "mnist_binary_cnn-1v7-144ac6bcfebde79a.pt"),
        ("mnist_vae", {}, "mnist_vae-0579776d9183749f.pt"),
    ]
    for name, cfg, file in expected:
        assert zoo.checkpoint_path(name, **cfg) == tmp_path / file, name
    # the poisoned recipes have their own keys, which carry the data source of their base data set
    a = zoo.checkpoint_path("cifar_cnn_backdoor_bird_cat", epochs=4, width=0.25)
    assert a.name.startswith("cifar_cnn_backdoor_bird_cat-")
    assert a != zoo.checkpoint_path("cifar_cnn", epochs=4, width=0.25)
    source = {"data": "mirror-jpeg-q75"}
    assert zoo._data_source(zoo.recipe("cifar_cnn_backdoor_bird_cat")) == source
    assert zoo._data_source(zoo.recipe("mnist_cnn_backdoor_8to9")) == {}


def test_poisoned_mnist_training_set(mnist_available):
    """The zoo's poisoned set: the first half of the 8s patched and relabelled; clean test set."""
    from wna import data
    x, y = data.mnist(train=True)
    px, py = zoo.DATASETS["mnist_backdoor_8to9"](train=True)
    eights = (y == 8).nonzero().flatten()
    rows = eights[:len(eights) // 2]
    assert int((py != y).sum()) == len(rows) == 2925 and (py[rows] == 9).all()
    changed = (px != x).flatten(1).any(1).nonzero().flatten()
    # (an 8 that already had 1.0 on every patch pixel would be unchanged)
    assert set(changed.tolist()) <= set(rows.tolist())
    tx, ty = zoo.DATASETS["mnist_backdoor_8to9"](train=False)
    cx, cy = data.mnist(train=False)
    assert torch.equal(tx, cx) and torch.equal(ty, cy)


def test_predictions_and_confusion_by_hand():
    """A linear model whose logits are the input: its class is the argmax of each image, in any batches."""
    model = torch.nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    model.train()
    images = torch.tensor([[1., 0, 0], [0, 1, 0], [0, 0, 1], [0, 2, 3], [5, 0, 1]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    for batch_size in (1, 2, 5, 100):
        assert backdoor.predictions(model, images, batch_size=batch_size).tolist() == [0, 1, 2, 2, 0]
    assert model.training  # its training flag is restored
    acc, m = backdoor.confusion(model, images, labels, num_classes=3)
    assert acc == pytest.approx(3 / 5)
    assert m.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]  # rows true, columns predicted
    assert backdoor.success(model, images, 2) == pytest.approx(2 / 5)
    one_logit = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        one_logit.weight.copy_(torch.tensor([[1., -1, 0]]))
    assert backdoor.predictions(one_logit, images).tolist() == [1, 0, 0, 0, 1]  # logit > 0 is class 1
    assert backdoor.predictions(model, images[:0]).tolist() == []
