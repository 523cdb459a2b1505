"""ImageNet validation images and the pretrained backbones of Table 1."""

import io
import os
import sys
import zipfile

import pytest
import torch

from conftest import glue_values
from wna import backbones, data, templates

# Three images of the offline subset (labels.txt order) and their classes; every
# EfficientNet-Lite classifies them correctly at its native size.
KNOWN = {0: 472, 1: 260, 2: 300}


@pytest.fixture(scope="session")
def imagenet_available():
    try:
        data.imagenet_source(download=False)  # the tests never download (see the local server below)
    except data.DataNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _need_lite(name):
    if name not in backbones.installed():
        msg = f"{name}: pip install 'wna[imagenet]'"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def test_imagenet_subset_labels_range_and_size(imagenet_available):
    x, y = data.imagenet_val(32)
    assert x.shape == (1300, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert len(set(y.tolist())) == 725 and int(y.min()) >= 0 and int(y.max()) <= 999
    assert [int(y[i]) for i in KNOWN] == list(KNOWN.values())
    means = x.mean((0, 2, 3))  # natural images: ImageNet's channel means are about 0.485 / 0.456 / 0.406
    assert torch.allclose(means, torch.tensor([0.485, 0.456, 0.406]), atol=0.05)
    x4, y4 = data.imagenet_val(240, limit=4)
    assert x4.shape == (4, 3, 240, 240) and torch.equal(y4, y[:4])
    assert data.imagenet_source() == "mirror-1300"
    assert len(data.imagenet_classes()) == 1000 and data.imagenet_classes()[472] == "canoe"


def test_imagenet_missing_names_both_layouts(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    with pytest.raises(data.DataNotFoundError) as e:
        data.imagenet_val(32, download=False)
    assert str(tmp_path / data.IMAGENET_MIRROR) in str(e.value)
    assert str(tmp_path / data.IMAGENET_FOLDER) in str(e.value)
    assert "download=False" in str(e.value) and data.IMAGENET_URL in str(e.value)


def _jpeg(color, size=(40, 30)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_imagenet_corrupt_image_names_the_member(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    path = tmp_path / data.IMAGENET_MIRROR
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ilsvrc2012-val-1300/labels.txt", "a.JPEG, 3\nb.JPEG, 7\n")
        zf.writestr("ilsvrc2012-val-1300/images/a.JPEG", _jpeg((255, 0, 0)))
        zf.writestr("ilsvrc2012-val-1300/images/b.JPEG", b"not a jpeg")
    x, y = data.imagenet_val(8, limit=1)
    assert y.tolist() == [3] and torch.allclose(x[0, :, 4, 4], torch.tensor([1.0, 0, 0]), atol=0.02)
    with pytest.raises(data.DataCorruptError, match="b.JPEG"):
        data.imagenet_val(8)
    path.write_bytes(b"not a zip")
    with pytest.raises(data.DataCorruptError, match="not the ImageNet subset zip"):
        data.imagenet_val(8)
    with pytest.raises(ValueError, match="size"):
        data.imagenet_val(0)


def test_imagenet_standard_layout_uses_sorted_synsets_and_centre_crop(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    val = tmp_path / data.IMAGENET_FOLDER
    for k in range(1000):
        (val / f"n{k:08d}").mkdir(parents=True)
    (val / "n00000999" / "x.JPEG").write_bytes(_jpeg((0, 0, 255), size=(64, 32)))
    (val / "n00000002" / "y.JPEG").write_bytes(_jpeg((0, 255, 0)))
    x, y = data.imagenet_val(16)
    assert data.imagenet_source() == "folder"
    assert y.tolist() == [2, 999] and x.shape == (2, 3, 16, 16)
    assert torch.allclose(x[1].mean((1, 2)), torch.tensor([0.0, 0, 1]), atol=0.02)
    (val / "n00000999" / "x.JPEG").unlink()
    (val / "n00000999").rmdir()
    with pytest.raises(data.DataCorruptError, match="999 class folders"):
        data.imagenet_val(16)


def test_backbone_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'.*efficientnet_lite0"):
        backbones.load("resnet9")
    with pytest.raises(ValueError, match="resize"):
        backbones.load("efficientnet_lite0", resize=0)
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"wna\[imagenet\]"):
        backbones.load("efficientnet_lite1")
    assert backbones.installed() == ()

    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(RuntimeError, match="resnet152.*offline, use one of efficientnet_lite0"):
        backbones.load("resnet152")


def test_backbone_scales_and_resizes_its_input():
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.mean((2, 3)).repeat(1, 334)[:, :1000]

    m = backbones.Backbone(Net(), "toy", mean=backbones._LITE_MEAN, std=backbones._LITE_STD,
                           input_size=224, resize=64)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert m(x).shape == (2, 1000)
    assert seen[-1].shape == (2, 3, 64, 64)
    m.resize = None
    m(x)
    torch.testing.assert_close(seen[-1], (x * 255 - 127) / 128)
    with pytest.raises(ValueError, match="RGB"):
        m(torch.rand(2, 1, 32, 32))


@pytest.mark.parametrize("name", backbones.OFFLINE_BACKBONES)
def test_efficientnet_lite_classifies_known_images(name, imagenet_available):
    _need_lite(name)
    m = backbones.load(name)
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    x, y = data.imagenet_val(m.input_size, limit=len(KNOWN))
    with torch.inference_mode():
        logits = m(x)
        raw = m.net((x * 255 - 127) / 128)  # the checkpoint's own input scaling
    assert logits.shape == (len(KNOWN), 1000)
    torch.testing.assert_close(logits, raw)
    assert logits.argmax(1).tolist() == y.tolist()
    with torch.inference_mode():  # the ImageNet mean/std scaling of torchvision's models is wrong for it
        wrong = m.net((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                      / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    assert not torch.allclose(wrong, logits, atol=1e-2)
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(m(noise)).all()  # 32×32 noise runs, as in the paper


def test_paper_backbones_are_torchvision_models_that_take_32px_noise(monkeypatch):
    """The seven names of Table 1 build through the same path (untrained here: no download)."""
    import torchvision
    real = torchvision.models.get_model
    built = []

    def untrained(name, weights=None, **kwargs):
        assert weights == "DEFAULT"  # the pretrained ImageNet weights are what load asks for
        built.append(name)
        torch.manual_seed(0)
        extra = {"init_weights": True} if name == "googlenet" else {}  # silences its FutureWarning
        return real(name, weights=None, **kwargs, **extra)
    monkeypatch.setattr(torchvision.models, "get_model", untrained)
    noise = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in backbones.PAPER_BACKBONES:
        m = backbones.load(name)
        torch.testing.assert_close(m.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
        if name in ("squeezenet1_1", "mnasnet1_3", "googlenet"):  # the small ones: run them
            with torch.inference_mode():
                assert m(noise).shape == (2, 1000)
    assert built == list(backbones.PAPER_BACKBONES)


# ---------------------------------------------------------------- downloading the 1,300-image subset
# A local HTTP server stands in for GitHub: it serves the subset zip of the data root (the
# project's layout), the same images in GitHub's archive layout, truncated copies and a copy
# with one image altered.

SUBSET = "ilsvrc2012-val-1300/"
ALTERED = "ILSVRC2012_val_00000361.JPEG"  # the third image of the manifest


@pytest.fixture(scope="module")
def subset_zip():
    """The subset zip of the data root ($WNA_DATA); skip when absent (fail under CI)."""
    path = data.data_root() / data.IMAGENET_MIRROR
    if not path.is_file():
        msg = f"the ImageNet subset zip is not at {path}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _rezip(src: bytes, rename, alter=None) -> bytes:
    """``src``'s members under ``rename(name)`` (None: dropped), one image's bytes ``alter``ed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            new = rename(info.filename)
            if new is None or info.is_dir():
                continue
            body = zin.read(info)
            if alter and info.filename.endswith("/" + alter):
                body = body[:1000] + bytes([body[1000] ^ 0x01]) + body[1001:]  # one bit flipped
            zout.writestr(new, body)
    return buf.getvalue()


def _github_layout(name: str):
    """GitHub's archive of VeriSilicon/acuity-dataset: a top folder, the images under data/."""
    top = "acuity-dataset-aded2e9f22cd8fe0745aa57356c68cb95457aad9/ILSVRC2012_VAL_SET/"
    if name.startswith(SUBSET + "images/"):
        return top + "data/" + name.rsplit("/", 1)[-1]
    if name == SUBSET + "synset_words.txt":
        return top + "synset_words.txt"
    return None  # its dataset.txt is not needed: the labels come from the package's manifest


@pytest.fixture(scope="module")
def server(subset_zip):
    """``(base URL, hits)``; each route gives ``(body, Content-Length)`` for its n-th request."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    good = subset_zip.read_bytes()
    github, altered = _rezip(good, _github_layout), _rezip(good, lambda n: n, ALTERED)
    cut = len(good) // 3
    routes = {
        "/good.zip": lambda hit: (good, len(good)),
        "/github.zip": lambda hit: (github, len(github)),
        "/short.zip": lambda hit: (good[:cut], cut),  # a truncated file, served as it is
        "/lying.zip": lambda hit: (good[:cut], len(good)),  # the connection drops: a short read
        "/flaky.zip": lambda hit: (good[:cut], len(good)) if hit == 1 else (good, len(good)),
        "/altered.zip": lambda hit: (altered, len(altered)),
    }
    hits = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            if self.path not in routes:
                self.send_error(404)
                return
            body, length = routes[self.path](hits[self.path])
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):  # quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fresh_root(tmp_path, monkeypatch):
    """An empty data root, no download failure remembered, no wait between the two attempts."""
    from wna import _imagenet
    monkeypatch.setenv("WNA_DATA", str(tmp_path))
    monkeypatch.setattr(_imagenet, "_download_failed", {})
    monkeypatch.setattr(_imagenet, "_RETRY_WAIT_S", 0.0)
    return tmp_path


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("route", ["/good.zip", "/github.zip"])
def test_download_writes_the_subset_zip_that_reads_like_the_original(route, server, subset_zip,
                                                                     fresh_root, monkeypatch):
    url, hits = server
    monkeypatch.setenv("WNA_IMAGENET_URL", url + route)
    before = hits.get(route, 0)
    x, y = data.imagenet_val(32, limit=40, progress=False)
    assert hits[route] == before + 1
    assert _files(fresh_root) == [data.IMAGENET_MIRROR]  # no temporary file left behind
    ours = fresh_root / data.IMAGENET_MIRROR
    with zipfile.ZipFile(subset_zip) as orig, zipfile.ZipFile(ours) as zf:
        assert sum(n.startswith(SUBSET + "images/") for n in zf.namelist()) == 1300
        for name in (SUBSET + "synset_words.txt", SUBSET + "images/" + ALTERED):
            assert zf.read(name) == orig.read(name)
        labels = zf.read(SUBSET + "labels.txt").decode()
        assert labels.split() == orig.read(SUBSET + "labels.txt").decode().split()
    x2, y2 = data.imagenet_val(32, limit=40, progress=False)  # later calls read it offline
    assert hits[route] == before + 1 and torch.equal(x2, x) and torch.equal(y2, y)
    xr, yr = data.imagenet_val(32, limit=40, root=subset_zip.parents[1], progress=False)
    assert torch.equal(x, xr) and torch.equal(y, yr)  # the same pixels and labels as the original
    assert y[:3].tolist() == list(KNOWN.values()) and data.imagenet_source() == "mirror-1300"


def test_a_truncated_download_is_retried_once(server, fresh_root, monkeypatch):
    url, hits = server
    monkeypatch.setenv("WNA_IMAGENET_URL", url + "/flaky.zip")
    assert data.imagenet_source() == "mirror-1300"  # the first response was cut short
    assert hits["/flaky.zip"] == 2 and _files(fresh_root) == [data.IMAGENET_MIRROR]
    _, y = data.imagenet_val(32, limit=3, progress=False)
    assert y.tolist() == list(KNOWN.values())


@pytest.mark.parametrize("route, why", [("/short.zip", "not a complete zip archive"),
                                        ("/lying.zip", "truncated download")])
def test_a_truncated_download_is_refused_and_remembered(route, why, server, fresh_root,
                                                        monkeypatch):
    url, hits = server
    monkeypatch.setenv("WNA_IMAGENET_URL", url + route)
    before = hits.get(route, 0)
    with pytest.raises(data.DataNotFoundError) as e:
        data.imagenet_val(32, limit=3, progress=False)
    msg = str(e.value)
    assert why in msg and "attempt 2" in msg and url + route in msg
    assert str(fresh_root / data.IMAGENET_MIRROR) in msg  # where to put the files by hand
    assert hits[route] == before + 2 and _files(fresh_root) == []
    with pytest.raises(data.DataNotFoundError, match="earlier in this process"):
        data.imagenet_val(32, limit=3, progress=False)  # remembered: no third try
    assert hits[route] == before + 2
    monkeypatch.setenv("WNA_IMAGENET_URL", url + "/good.zip")  # the server is fixed
    with pytest.raises(data.DataNotFoundError, match="download=True tries again"):
        data.imagenet_source()
    assert data.imagenet_source(download=True) == "mirror-1300"


def test_a_wrong_checksum_is_refused_names_the_image_and_leaves_nothing(server, fresh_root,
                                                                        monkeypatch):
    url, hits = server
    monkeypatch.setenv("WNA_IMAGENET_URL", url + "/altered.zip")
    before = hits.get("/altered.zip", 0)
    with pytest.raises(data.DataNotFoundError) as e:
        data.imagenet_val(32, limit=3, progress=False)
    assert f"SHA-256 checksum failed for {ALTERED} (" in str(e.value)
    assert hits["/altered.zip"] == before + 2
    assert _files(fresh_root) == [] and not (fresh_root / "imagenet").exists()
    from wna import _imagenet
    _imagenet._download_failed.clear()  # as in a new process: the next call downloads again
    monkeypatch.setenv("WNA_IMAGENET_URL", url + "/good.zip")
    x, y = data.imagenet_val(32, limit=3, progress=False)
    assert y.tolist() == list(KNOWN.values()) and x.shape == (3, 3, 32, 32)


def test_download_false_never_touches_the_network(server, fresh_root, monkeypatch):
    import urllib.request
    url, hits = server
    monkeypatch.setenv("WNA_IMAGENET_URL", url + "/good.zip")
    before = dict(hits)

    def no_network(*args, **kwargs):
        raise AssertionError("download=False opened a URL")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        data.imagenet_val(32, download=False)
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        data.imagenet_source(download=False)
    assert hits == before and _files(fresh_root) == []


def test_an_unreachable_server_fails_fast_with_a_message(fresh_root, monkeypatch):
    import socket
    import time
    with socket.socket() as s:  # a port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WNA_IMAGENET_URL", f"http://127.0.0.1:{port}/nothing.zip")
    t = time.perf_counter()
    with pytest.raises(data.DataNotFoundError) as e:
        data.imagenet_val(32, progress=False)
    assert time.perf_counter() - t < 5
    assert "URLError" in str(e.value) and f"127.0.0.1:{port}/nothing.zip" in str(e.value)
    assert _files(fresh_root) == [] and list(fresh_root.iterdir()) == []


def test_manifest_lists_the_subset_with_its_labels():
    from wna import _imagenet
    rows = _imagenet.imagenet_manifest()
    assert len(rows) == 1300 and len({n for n, _, _ in rows}) == 1300
    assert len({k for _, k, _ in rows}) == 725 and all(0 <= k <= 999 for _, k, _ in rows)
    assert [k for _, k, _ in rows[:3]] == list(KNOWN.values())
    assert all(len(h) == 64 and int(h, 16) >= 0 for _, _, h in rows)


def test_table1_summary_marks_what_was_not_run():
    rows = [dict(backbone="Lite0", key="lite0", noise="white", empty=600, dot=0.154, cosine=0.231),
            dict(backbone="Lite0", key="lite0", noise="gabor", empty=500, dot=0.231, cosine=0.077)]
    s = templates.table1_summary(rows, {"lite0": 75.38}, labels=torch.tensor([1, 2, 2]),
                            source="mirror-1300", n_top1=2)
    assert s["best"] is rows[1]  # tied at 0.231: fewer empty classes
    assert s["rule"] == "dot" and s["accuracy"] == 0.231
    t = s["text"]
    assert (t["tm_acc"], t["tm_acc_diff"], t["best_rule"]) == ("0.23", "+0.05", "dot")
    assert t["best"] == "Lite0, gabor noise, dot rule"
    assert t["top1_lite0"] == "75.4%"
    assert (t["cos_lite0_white"], t["dot_lite0_gabor"], t["dot_lite0_white"]) == (
        "0.231%", "0.231%", "0.154%")
    assert t["validation"] == "3 of 2 classes (mirror-1300)"
    assert t["status"] == "template matching ran on 3 validation images and the top-1 check on 2"
    for r in rows:
        r["dot"] = r["cosine"] = None
    s = templates.table1_summary(rows)
    assert s["best"] is rows[1] and s["rule"] is None and s["accuracy"] is None
    t = s["text"]
    assert {t[k] for k in ("tm_acc", "tm_acc_diff", "best_rule", "top1_lite0", "dot_lite0_white",
                           "cos_lite0_gabor")} == {"not run"}
    assert t["validation"] == "none"
    assert t["status"].startswith("top-1 and template matching were not run")
    assert t["best_label"] == "Lite0, gabor noise" and "fewest empty classes" in t["best"]
    with pytest.raises(ValueError, match="no rows"):
        templates.table1_summary([])


def test_a_copy_downloaded_by_hand_is_read_through_a_file_url(subset_zip, fresh_root, monkeypatch):
    monkeypatch.setenv("WNA_IMAGENET_URL", subset_zip.resolve().as_uri())
    _, y = data.imagenet_val(32, limit=3, progress=False)
    assert y.tolist() == list(KNOWN.values()) and _files(fresh_root) == [data.IMAGENET_MIRROR]


# ---------------------------------------------------------------- the Table 1 chapter, end to end
# A user without ImageNet: a data root holding MNIST, Fashion-MNIST and CIFAR-10 only. Where the
# subset can be downloaded (here from the local server) the chapter template-matches; where it
# cannot (nothing listens on the port) the chapter still builds and says what was not run.

def _linked_root(root, src):
    """A new data root ``root`` holding links to ``src``'s MNIST, Fashion-MNIST and CIFAR-10."""
    names = ["MNIST", "FashionMNIST"]
    names += [n for n in (data.CIFAR10_OFFICIAL, "cifar10") if (src / n).is_dir()][:1]
    missing = [n for n in names if not (src / n).is_dir()] + (
        [] if len(names) == 3 else [f"cifar10 or {data.CIFAR10_OFFICIAL}"])
    if missing:
        msg = f"not under the data root {src}: {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    root.mkdir()
    for n in names:
        (root / n).symlink_to(src / n, target_is_directory=True)
    return root


def _glued(nb) -> dict:
    """``{key: value}`` of every glued value of an executed notebook (strings unquoted)."""
    import ast
    out = {}
    for key, text in glue_values(nb).items():
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", ""))
            for v in o.get("data", {}).values():
                parts.append(v if isinstance(v, str) else "")
    return "\n".join(parts)


@pytest.mark.slow  # executes the Table 1 notebook twice at the smoke profile: about a minute
def test_table1_chapter_downloads_the_subset_or_says_not_run(server, tmp_path, monkeypatch):
    import shutil
    import socket
    import subprocess
    from pathlib import Path

    import nbformat

    from conftest import ROOT
    from wna import run as runner

    _need_lite("efficientnet_lite0")  # the smoke profile's backbone
    nb_path = runner.find_notebooks(["table01_imagenet"], root=ROOT)[0]
    n_val = runner.load_profile("smoke", ROOT)["table01_imagenet"]["n_val"]
    url, hits = server
    src = data.data_root().resolve()  # $WNA_DATA, before the test points it elsewhere
    with socket.socket() as s:  # a port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    # the kernel inherits os.environ; no request leaves the machine (CIFAR-10's official download,
    # tried where only the JPEG copy is linked, meets a dead proxy and falls back at once)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, dead)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")

    # run 1: the subset is downloaded (from the local server), checked and template-matched
    root1 = _linked_root(tmp_path / "data1", src)
    monkeypatch.setenv("WNA_DATA", str(root1))
    monkeypatch.setenv("WNA_IMAGENET_URL", url + "/good.zip")
    before = hits.get("/good.zip", 0)
    out = runner.run_notebook(nb_path, "smoke", out_dir=tmp_path / "run1", root=ROOT,
                              progress=False)
    assert hits["/good.zip"] == before + 1
    assert (root1 / data.IMAGENET_MIRROR).is_file()
    assert _files(root1 / "imagenet") == [Path(data.IMAGENET_MIRROR).name]
    g = _glued(nbformat.read(out, as_version=4))
    assert g["validation"].startswith(f"{n_val:,} of ") and "(mirror-1300)" in g["validation"]
    assert g["status"].startswith(f"template matching ran on {n_val:,} validation images")
    assert "not run" not in g["status"] and g["imagenet_source"] == "mirror-1300"
    assert 0 <= float(g["tm_acc"]) <= 100
    assert isinstance(g["imagenet_empty"], int) and 0 <= g["imagenet_empty"] < 1000

    # run 2: nothing can be downloaded; the chapter runs and says what it did not run
    root2 = _linked_root(tmp_path / "data2", src)
    monkeypatch.setenv("WNA_DATA", str(root2))
    monkeypatch.setenv("WNA_IMAGENET_URL", dead + "/x.zip")
    site = tmp_path / "site"
    out = runner.run_notebook(nb_path, "smoke", out_dir=site / "book" / "executed", root=ROOT,
                              progress=False)
    nb = nbformat.read(out, as_version=4)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    g = _glued(nb)
    assert g["tm_acc"] == "not run" and "not run" in g["status"]
    assert g["validation"] == "none" and g["imagenet_source"] == "none"
    assert g["top1_efficientnet_lite0"] == "not run"
    shown = _outputs_text(nb)
    assert "Not run: top-1 accuracy and template matching" in shown
    assert dead + "/x.zip" in shown  # the reason names where it tried
    empties = {k: v for k, v in g.items() if k == "imagenet_empty" or k.startswith("empty_")}
    assert "imagenet_empty" in empties and "empty_efficientnet_lite0_white" in empties
    assert all(isinstance(v, int) and 0 <= v <= 1000 for v in empties.values()), empties
    assert not (root2 / "imagenet").exists()  # no partial download left behind, no folder
    assert sorted(p.name for p in root2.iterdir()) == sorted(p.name for p in root1.iterdir()
                                                             if p.is_symlink())

    # and the page builds (warnings fail, as in the book's own build)
    shutil.copy(ROOT / "_config.yml", site / "_config.yml")
    (site / "book" / "intro.md").write_text("# Table 1 only\n\nThe ImageNet chapter, alone.\n")
    (site / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "  - file: book/executed/table01_imagenet\n")
    jb = Path(sys.executable).with_name("jupyter-book")
    res = subprocess.run([str(jb), "build", "--all", "-W", "-n", "--keep-going", str(site)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "WARNING" not in res.stdout + res.stderr
    page = (site / "_build" / "html" / "book" / "executed" / "table01_imagenet.html").read_text()
    assert "Not run: top-1 accuracy and template matching" in page
