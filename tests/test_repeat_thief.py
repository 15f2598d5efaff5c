"""The thief who asks again (`repeat`): it applies only where an API draws every answer anew, spends exactly the
budget, and its mean answers carry less noise than single ones (a real defended run trains it: test_defended_run)."""

from __future__ import annotations

import torch

from fmsteal.adversary.blackbox import Answers, BlackBoxVictim
from fmsteal.adversary.defences.base import DefenceContext, build_defence, plan_defence
from fmsteal.adversary.thieves import REPEATS, applicable, mean_answers, trained_apart
from fmsteal.experiment.phases import ask_repeatedly


def test_the_repeat_thief_applies_only_where_asking_again_gives_another_draw():
    assert applicable("repeat", plan_defence("gaussian-noise", {"sigma": 0.1}, "probs"))
    assert applicable("repeat", plan_defence("gaussian-noise", {"sigma": 0.3}, "label"))  # noise flips top-1 labels
    for name, params in (("reverse-sigmoid", {}), ("mad", {"epsilon": 0.5}), ("watermark", {"rate": 0.1})):
        assert not applicable("repeat", plan_defence(name, params, "probs"))  # the same image, the same answer
    # it buys answers of its own, so it is trained even where every other thief would learn the default one's labels
    assert trained_apart(plan_defence("gaussian-noise", {"sigma": 0.3}, "label")) == ["repeat"]


def test_mean_answers_average_the_asks_of_each_image():
    labels = torch.tensor([0, 1, 2, 0, 1, 1, 2, 1, 2, 0, 1, 2])  # 3 images asked 4 times (rows i, i + 3, ...)
    voted = mean_answers(Answers(labels=labels), 4, num_classes=3)
    assert torch.allclose(voted.probs, torch.tensor([[0.75, 0.0, 0.25], [0.0, 1.0, 0.0], [0.0, 0.25, 0.75]]))
    assert voted.labels.tolist() == [0, 1, 2]
    probs = torch.rand(8, 5).softmax(1)
    assert torch.allclose(mean_answers(Answers(labels=probs.argmax(1), probs=probs), 2, 5).probs,
                          (probs[:4] + probs[4:]) / 2)


def test_asking_a_noisy_api_again_spends_the_budget_on_fewer_images_with_quieter_answers():
    generator = torch.Generator().manual_seed(0)
    weights = 0.4 * torch.randn(3 * 4 * 4, 10, generator=generator)  # a top class of about 0.37 on average
    images = torch.randint(0, 256, (2000, 3, 4, 4), dtype=torch.uint8, generator=generator)

    def victim(batch: torch.Tensor) -> torch.Tensor:
        return (batch.flatten(1) @ weights).softmax(1)

    def api() -> BlackBoxVictim:
        plan = plan_defence("gaussian-noise", {"sigma": 0.3}, "probs")
        noise = build_defence(plan.name, plan.params, DefenceContext(num_classes=10, seed=3))
        return BlackBoxVictim(victim, 10, "probs", budget=len(images), defence=noise)

    client = api()
    asked, answers = ask_repeatedly(client, images, REPEATS)
    assert client.queries_used == client.budget and len(asked) == len(images) // REPEATS
    assert torch.equal(asked, images[:len(asked)])
    truth = victim(asked.float() / 255)
    single = api()(asked.float() / 255).probs
    assert (answers.probs - truth).abs().mean() < 0.8 * (single - truth).abs().mean()  # clipping at 0 biases both
    top_class = truth.argmax(1)
    assert (answers.labels == top_class).float().mean() > (single.argmax(1) == top_class).float().mean() + 0.1
