"""Victim sources: the answer rule, Python callables (`api`), model files (`file`) and the registry."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from fmsteal.errors import ConfigError
from fmsteal.victims import (VICTIM_SOURCES, VictimError, VictimHandle, callable_victim, open_victim, parse_victim,
                             resolve_victim, to_probabilities)
from victim_fixtures import CLASSES, cifar_images, classifier, exported  # noqa: F401


def test_the_registry_lists_every_source_with_its_cli_flag():
    assert {"api", "file", "url", "space"} <= set(VICTIM_SOURCES.names())
    flags = {e.meta["flag"] for e in VICTIM_SOURCES}
    assert flags >= {"--victim-api", "--victim-file", "--victim-url", "--victim-space"}
    assert parse_victim("url:http://h:1/p") == ("url", "http://h:1/p")
    assert parse_victim("api:pkg.mod:fn") == ("api", "pkg.mod:fn")
    assert parse_victim("tf_efficientnet_lite0") == ("zoo", "tf_efficientnet_lite0")


def test_a_spec_without_a_known_source_or_target_says_how_to_write_one():
    with pytest.raises(ConfigError, match="file:model.onnx"):
        open_victim("model.onnx")
    with pytest.raises(ConfigError, match="names no PATH"):
        open_victim("file:")
    with pytest.raises(ConfigError, match="batch_size must be"):
        open_victim("file:x.onnx", {"batch_size": 0})
    with pytest.raises(ConfigError, match="has no parameter colour"):
        open_victim("file:x.onnx", {"colour": "red"})


# The answer rule: probabilities, logits or labels -> probabilities.

def test_probabilities_are_kept_and_rounded_ones_renormalised():
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.33, 0.33, 0.33]])
    out = to_probabilities(probs, 2, None)
    assert torch.allclose(out[0], probs[0]) and torch.allclose(out.sum(1), torch.ones(2))
    assert torch.allclose(out[1], torch.full((3,), 1 / 3))


def test_logits_get_a_softmax():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])  # the second row is in [0, 1] but sums to 0.6
    assert torch.allclose(to_probabilities(logits.numpy(), 2, 3), logits.softmax(1))
    assert torch.allclose(to_probabilities({"logits": [[0.2, 0.8]]}, 1, 2), torch.tensor([[0.2, 0.8]]).softmax(1))


def test_labels_become_one_hot_and_need_the_class_count():
    assert to_probabilities(torch.tensor([2, 0]), 2, 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert to_probabilities(["cat", "bird"], 2, 10, CLASSES).argmax(1).tolist() == [3, 2]
    with pytest.raises(VictimError, match="give num_classes"):
        to_probabilities([1, 2], 2, None)
    with pytest.raises(VictimError, match="outside 0..2"):
        to_probabilities([3, 0], 2, 3)
    with pytest.raises(VictimError, match="'zebra'"):
        to_probabilities(["zebra"], 1, 10, CLASSES)


@pytest.mark.parametrize("answer, message", [
    (torch.tensor([[0.5, float("nan"), 0], [0.5, 0.5, 0]]), "NaN or infinite scores for 1 of 2"),
    (torch.ones(3, 3) / 3, "3 rows for 2 images"),
    (torch.ones(2, 2, 2), "shaped \\(2, 2, 2\\)"),
    (torch.tensor([1, 0, 1]), "3 labels for 2 images"),
    ("a page", "'a page'"),
    ({"probabilities": [[2.0, -1.0, 0], [0.5, 0.5, 0]]}, "not probabilities"),
    (torch.ones(2, 4) / 4, "4 classes, but 3 were expected"),
    ({"labels": 3}, "labels as int .3.; expected a list"),
    ([[0.5, 0.5, None], [0.2, 0.3, 0.5]], "not an array of numbers"),
])
def test_bad_answers_name_what_was_wrong(answer, message):
    with pytest.raises(VictimError, match=message):
        to_probabilities(answer, 2, 3, where="the test victim")


# Python callables.

def test_a_callable_victim_learns_its_class_count_and_refuses_a_change():
    outputs = iter([torch.randn(4, 5), torch.randn(4, 6)])
    victim = callable_victim(lambda images: next(outputs))
    assert victim.num_classes is None
    assert victim.probabilities(torch.rand(4, 3, 8, 8)).shape == (4, 5) and victim.num_classes == 5
    with pytest.raises(VictimError, match="6 classes, but 5 were expected"):
        victim.probabilities(torch.rand(4, 3, 8, 8))
    assert victim.accounting() == {"answered": 4, "sent": 8, "replayed": 0, "logged": 0, "probes": 0,
                                   "failed_attempts": 0}
    assert victim.fingerprint() is None  # a Python callable may change at any time: nothing to name it by


def test_a_callable_that_raises_is_named_in_the_error():
    def broken(images):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(VictimError, match="raised RuntimeError: CUDA out of memory"):
        callable_victim(broken, "my model").probabilities(torch.rand(1, 3, 8, 8))


def test_resolve_victim_takes_a_handle_a_spec_or_a_callable(user_module):
    handle = callable_victim(lambda images: torch.zeros(len(images), 4))
    assert resolve_victim(handle) is handle
    assert resolve_victim("api:mymodel:predict", num_classes=3).description == "api:mymodel:predict"
    from_callable = resolve_victim(lambda images: [0] * len(images), class_names=CLASSES)
    assert isinstance(from_callable, VictimHandle) and from_callable.num_classes == 10
    assert from_callable.probabilities(torch.rand(2, 3, 4, 4)).argmax(1).tolist() == [0, 0]
    handle.probabilities(torch.rand(1, 3, 4, 4))
    with pytest.raises(ConfigError, match="predicts 4 classes, but 10 are expected"):
        resolve_victim(handle, num_classes=10)
    with pytest.raises(ConfigError, match="not to a callable"):
        resolve_victim(lambda images: images, {"batch_size": 2})


def test_images_are_checked_and_batched():
    seen = []
    victim = callable_victim(lambda images: seen.append(len(images)) or images.mean((2, 3)), batch_size=4)
    probs = victim.probabilities(torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8))
    assert seen == [4, 4, 2] and probs.shape == (10, 3)
    with pytest.raises(ValueError, match="n x 3 x H x W"):
        victim.probabilities(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        victim.probabilities(torch.rand(2, 3, 8, 8) * 255)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A folder with the user's own model module, made the current directory."""
    (tmp_path / "mymodel.py").write_text(textwrap.dedent("""
        import torch

        calls = []

        def predict(images):
            calls.append(len(images))
            return images.mean((2, 3)).argmax(1)  # labels: the brightest channel

        def logits(images):
            return torch.stack([images[:, c].mean((1, 2)) * 10 for c in range(3)], 1)

        class Model:
            pass
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("mymodel", None)


def test_an_api_victim_is_imported_from_the_current_directory(user_module):
    images = torch.rand(6, 3, 8, 8)
    with open_victim("api:mymodel:predict", num_classes=3) as victim:
        probs = victim.probabilities(images)
    assert probs.argmax(1).tolist() == images.mean((2, 3)).argmax(1).tolist()
    assert probs.sum(1).tolist() == [1.0] * 6 and sys.modules["mymodel"].calls == [6]
    logits = open_victim("api:mymodel:logits").probabilities(images)
    assert torch.allclose(logits, (images.mean((2, 3)) * 10).softmax(1), atol=1e-6)


def test_an_api_victim_answering_labels_without_a_class_count_says_so(user_module):
    with pytest.raises(VictimError, match="give num_classes"):
        open_victim("api:mymodel:predict").probabilities(torch.rand(2, 3, 8, 8))


@pytest.mark.parametrize("spec, message", [
    ("api:nomodule:predict", "No module 'nomodule' in the current directory"),
    ("api:mymodel:missing", "has no 'missing'"),
    ("api:mymodel:Model", "is a class"),
    ("api:mymodel", "must be written module:function"),
])
def test_bad_api_specs_say_what_to_fix(user_module, spec, message):
    with pytest.raises(ConfigError, match=message):
        open_victim(spec)


# Model files: ONNX and TorchScript exported from a real model, never a pickle.

def _reference(classifier, images: torch.Tensor, size: int) -> torch.Tensor:
    x = F.interpolate(images.float() / 255, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        return classifier(x).softmax(1)


def test_an_onnx_victim_answers_as_the_model_and_knows_its_input_size_and_classes(exported, classifier, cifar_images):
    images = cifar_images[:12]
    with open_victim(f"file:{exported['onnx']}", {"batch_size": 5}) as victim:
        assert victim.num_classes == 10  # read from the ONNX output shape before any query
        probs = victim.probabilities(images)  # 32 px images, resized to the model's fixed 48 px
    expected = _reference(classifier, images, 48)
    assert torch.allclose(probs, expected, atol=1e-5)
    assert probs.argmax(1).tolist() == expected.argmax(1).tolist()
    with pytest.raises(ConfigError, match="predicts 10 classes, but 100 are expected"):
        open_victim(f"file:{exported['onnx']}", num_classes=100)


def test_a_torchscript_victim_answers_as_the_model(exported, classifier, cifar_images):
    images = cifar_images[:12]
    with open_victim(f"file:{exported['torchscript']}", {"image_size": 48}) as victim:
        probs = victim.probabilities(images)
    assert victim.num_classes == 10
    assert torch.allclose(probs, _reference(classifier, images, 48), atol=1e-5)


def test_a_file_victim_is_fingerprinted_by_its_content(exported, tmp_path):
    import shutil

    model = tmp_path / "model.onnx"
    shutil.copy(exported["onnx"], model)
    with open_victim(f"file:{model}") as victim:
        before = victim.fingerprint()
    assert before == open_victim(f"file:{exported['onnx']}").fingerprint()  # the same model anywhere
    shutil.copy(exported["torchscript"], model)  # another model saved at the same path
    with open_victim(f"file:{model}", {"image_size": 48}) as victim:
        assert victim.fingerprint() != before


class _Exploit:
    """An object whose unpickling runs code (it writes a file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_file_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": _Exploit(marker)}, tmp_path / "model.pt")
    with pytest.raises(ConfigError, match="never unpickles"):
        open_victim(f"file:{tmp_path / 'model.pt'}")
    assert not marker.exists()


def test_a_torch_export_archive_and_a_junk_file_are_refused(tmp_path):
    program = torch.export.export(torch.nn.Linear(3, 2), (torch.rand(1, 3),))
    torch.export.save(program, tmp_path / "model.pt2")
    with pytest.raises(ConfigError, match="torch.export archive"):
        open_victim(f"file:{tmp_path / 'model.pt2'}")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="neither an ONNX model nor a TorchScript archive"):
        open_victim(f"file:{tmp_path / 'junk.onnx'}")
    with pytest.raises(ConfigError, match="does not exist"):
        open_victim(f"file:{tmp_path / 'missing.onnx'}")


# Command-line options, made from the registry.

def test_cli_flags_give_a_spec_and_the_options_the_user_set(user_module):
    import argparse

    from fmsteal.victims.options import add_victim_arguments, victim_from_arguments

    parser = argparse.ArgumentParser()
    add_victim_arguments(parser)
    args = parser.parse_args(["--victim-api", "mymodel:logits", "--victim-batch-size", "2"])
    spec, params = victim_from_arguments(args)
    assert (spec, params) == ("api:mymodel:logits", {"batch_size": "2"})
    with open_victim(spec, params) as victim:
        assert victim.batch_size == 2 and victim.probabilities(torch.rand(3, 3, 4, 4)).shape == (3, 3)
    assert victim_from_arguments(parser.parse_args([])) is None
    with pytest.raises(ConfigError, match="--victim-file takes .*not --victim-rate"):
        victim_from_arguments(parser.parse_args(["--victim-file", "m.onnx", "--victim-rate", "5"]))
    with pytest.raises(SystemExit):  # one source at a time
        parser.parse_args(["--victim-file", "m.onnx", "--victim-url", "http://h/p"])


def test_the_help_examples_of_the_victim_sources_work_as_pasted(user_module, exported, cifar_images):
    """`fmsteal attack --help` says e.g. `--victim-file model.onnx`: pasted as shown, each reaches its source with
    the registered example's target; the api and file ones answer (a URL server and the Hub are not here)."""
    import argparse
    import os
    import re
    import shutil
    import subprocess

    from fmsteal.victims.options import add_victim_arguments, victim_from_arguments

    shown = subprocess.run([sys.executable, "-m", "fmsteal", "attack", "--help"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "250"}, check=True).stdout
    pasted = dict(re.findall(r"\(e\.g\. (--victim-[a-z]+) (\S+)\)", shown))
    assert set(pasted) == {entry.meta["flag"] for entry in VICTIM_SOURCES if "flag" in entry.meta}
    parser = argparse.ArgumentParser()
    add_victim_arguments(parser)
    for entry in VICTIM_SOURCES:
        if "flag" in entry.meta:
            spec, _ = victim_from_arguments(parser.parse_args([entry.meta["flag"], pasted[entry.meta["flag"]]]))
            assert spec == entry.meta["example"]
    shutil.copy(exported["onnx"], "model.onnx")  # user_module made a temporary folder the current directory
    for flag in ("--victim-api", "--victim-file"):
        spec, params = victim_from_arguments(parser.parse_args([flag, pasted[flag]]))
        with open_victim(spec, params, num_classes=10) as victim:
            assert victim.probabilities(cifar_images[:4].float() / 255).shape == (4, 10)
