"""PRADA as its authors' code runs it: a line-for-line port of their `growing_set.py` decides every query,
fmsteal's batched detector must decide the same; on real CIFAR-10 it flags a synthetic stream and
(almost) no honest client."""

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from fmsteal.adversary.defences import DefenceContext, build_defence
from fmsteal.adversary.defences.prada import PradaDetector, false_alarms
from fmsteal.service import live

K = 10


class ReferencePrada:
    """GrowingDistanceAgent.single_query of SSGAalto/prada-protecting-against-dnn-model-stealing-attacks
    (growing_set.py, with growing_set_ops.l2 and mean_dif_std), one query at a time in float64."""

    def __init__(self, delta: float) -> None:
        self.delta, self.growing, self.grown, self.threshold, self.distances = delta, {}, {}, {}, {}
        self.processed, self.present, self.statistic = 0, 0, None

    def single_query(self, image: np.ndarray, c: int) -> int:
        if c not in self.growing:
            self.growing[c], self.threshold[c], self.grown[c] = [image], 0, [0]
        else:
            nearest = np.min([np.sqrt(np.sum((x - image) ** 2)) for x in self.growing[c]])
            self.distances.setdefault(c, []).append(nearest)
            if nearest > self.threshold[c]:
                self.growing[c].append(image)
                self.grown[c].append(nearest)
                grown = np.asarray(self.grown[c])
                self.threshold[c] = max(grown.mean() - grown.std(), self.threshold[c])
        if self.processed % 10 == 0:
            dists = np.asarray([d for found in self.distances.values() if len(found) >= 10 for d in found])
            with warnings.catch_warnings():  # the mean of no distances: nan, as in the reference
                warnings.simplefilter("ignore")
                dists = dists[abs(dists - np.mean(dists)) < 3 * np.std(dists)]
            if len(dists) > 100:
                self.statistic = stats.shapiro(dists)[0]
                self.present = 1 if self.statistic < self.delta else 0
        self.processed += 1
        return self.present


def near_duplicate_stream(images: torch.Tensor, copies: int, step: float, seed: int = 0) -> torch.Tensor:
    """A synthetic attack stream (as Papernot/JbDA-style probing): each seed image, then `copies`
    small random-sign perturbations of it."""
    generator = torch.Generator().manual_seed(seed)
    seeds = images.float() / 255
    stream = [seeds]
    for _ in range(copies):
        stream.append((seeds + step * torch.randint(0, 2, seeds.shape, generator=generator).mul(2).sub(1)).clamp(0, 1))
    return torch.stack(stream, 1).flatten(0, 1)


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """A perfect victim's answers (a stand-in: PRADA reads only the predicted class)."""
    return torch.nn.functional.one_hot(labels, K).float()


@pytest.fixture(scope="module")
def cifar(cifar_mini):
    from fmsteal.engine.data import load_splits

    return load_splits(str(cifar_mini))


def attack_stream(cifar) -> tuple[torch.Tensor, torch.Tensor]:
    """60 real training images, each followed by 4 near copies (300 queries), with their classes."""
    train = cifar.train
    seeds = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:60])
    return near_duplicate_stream(seeds.images, copies=4, step=0.02), seeds.labels.repeat_interleave(5)


def reference_verdicts(images: torch.Tensor, classes: torch.Tensor, delta: float) -> tuple[list[int], ReferencePrada]:
    reference = ReferencePrada(delta)
    flat = images.double().flatten(1).numpy()
    return [reference.single_query(x, int(c)) for x, c in zip(flat, classes)], reference


@pytest.mark.parametrize("stream", ["attack", "honest"])
def test_the_batched_detector_decides_every_query_as_the_reference_code(cifar, stream):
    if stream == "attack":
        images, classes = attack_stream(cifar)
    else:
        order = torch.randperm(len(cifar.test), generator=torch.Generator().manual_seed(3))[:400]
        images, classes = cifar.test.images[order].float() / 255, cifar.test.labels[order]
    verdicts, reference = reference_verdicts(images, classes, 0.9)
    one_by_one = PradaDetector(0.9)
    for i in range(len(images)):
        one_by_one.observe(images[i:i + 1], classes[i:i + 1])
        assert one_by_one.flagged == bool(verdicts[i]), f"query {i + 1}"
    batched = PradaDetector(0.9)
    for start in range(0, len(images), 64):
        batched.observe(images[start:start + 64], classes[start:start + 64])
    first = verdicts.index(1) + 1 if 1 in verdicts else None
    for detector in (one_by_one, batched):
        assert detector.detected_at == first and detector.flagged == bool(verdicts[-1])
        assert detector.statistic == pytest.approx(reference.statistic, abs=1e-4)
        assert detector.thresholds == pytest.approx(reference.threshold, rel=1e-4, abs=1e-6)
    assert (first is not None) == (stream == "attack")


def test_prada_flags_a_synthetic_stream_and_not_a_natural_one(cifar):
    images, classes = attack_stream(cifar)
    attack = build_defence("prada", {}, DefenceContext(K, 0))
    for batch, batch_classes in zip(images.split(50), classes.split(50)):
        attack.answer(batch, one_hot(batch_classes))
    report = attack.report()
    assert report["detected_at"] is not None and report["detected_at"] <= 200 and report["flagged"], report
    assert report["shapiro_w"] < 0.9

    test = cifar.test.subset(torch.randperm(len(cifar.test), generator=torch.Generator().manual_seed(0))[:600])
    natural = build_defence("prada", {}, DefenceContext(K, 0))
    natural.answer(test.images, one_hot(test.labels))
    assert natural.report()["detected_at"] is None and natural.report()["shapiro_w"] > 0.9


def test_twenty_shuffled_honest_streams_of_a_thousand_test_images_raise_at_most_two_alarms(cifar):
    test = cifar.test  # 1,000 real CIFAR-10 test images; each client sends all of them in its own order
    # delta 0.95, the grid's stricter setting: whatever it lets pass, 0.9 lets pass too (W < 0.9 implies W < 0.95)
    flagged = [false_alarms(test.images, one_hot(test.labels), 0.95, seed=seed)["benign_flagged_at"][0]
               for seed in range(20)]
    print(f"PRADA (delta 0.95) on 20 shuffled honest streams of 1,000 test images: flagged at {flagged}")
    assert sum(f is not None for f in flagged) <= 2


def test_false_alarms_split_a_benign_stream_into_clients_and_report_each(cifar):
    test = cifar.test  # the archive's natural order is class by class
    in_order = false_alarms(test.images, one_hot(test.labels), 0.95, queries=200)
    shuffled = false_alarms(test.images, one_hot(test.labels), 0.95, queries=200, seed=0)
    for measured in (in_order, shuffled):
        assert measured["benign_clients"] == 5 and measured["benign_queries_per_client"] == 200
        assert measured["false_alarm_rate"] == sum(f is not None for f in measured["benign_flagged_at"]) / 5
    print(f"PRADA false alarms (delta 0.95, 5 honest clients x 200 real test images): in archive order "
          f"{in_order['false_alarm_rate']:.2f}, shuffled {shuffled['false_alarm_rate']:.2f}")
    assert shuffled["false_alarm_rate"] <= 1 / 5

    context = DefenceContext(K, 0, benign=(test.images, one_hot(test.labels)))
    report = build_defence("prada", {}, context).report()
    assert report["benign_queries_per_client"] == 1000 and report["benign_clients"] == 1
    card = {"agreement": 0.8, "defence": {"name": "prada", "agreement_with_api": 0.8, "undefended_accuracy": 0.9,
                                          "api_accuracy": 0.9, "answers_changed": 0.0, **report}}
    alarms = f"it raised {100 * report['false_alarm_rate']:.0f}% false alarms"  # shown beside every detection
    assert f"PRADA never flagged the thief; on 1 honest client (1,000 shuffled test images each) {alarms}" \
        in live.defence_summary(card)
