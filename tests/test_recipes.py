"""The paper's hyperparameters and the schedules the training loop applies."""

from dataclasses import replace

import torch

from fmsteal.engine.recipes import FAST_FINETUNE, FAST_LINEAR, PAPER_THIEF, PAPER_VICTIM, recipe_for
from fmsteal.engine.train import fit, make_optimizer, soft_cross_entropy


def test_paper_preset_is_the_authors_recipe():
    victim = recipe_for("paper", "victim", "lp", scratch=False)
    assert victim == PAPER_VICTIM
    assert (victim.optimizer, victim.lr, victim.momentum, victim.weight_decay, victim.batch_size, victim.epochs) == \
        ("sgd", 0.002, 0.9, 5e-4, 64, 100)
    assert (victim.schedule, victim.step_every, victim.step_gamma) == ("step", 30, 0.1)
    thief = recipe_for("paper", "thief", "lp", scratch=False)
    assert thief == PAPER_THIEF == recipe_for("paper", "thief", "fft", scratch=False, backbone="resnet34")
    assert (thief.lr, thief.momentum, thief.weight_decay, thief.batch_size, thief.epochs) == (1e-3, 0.9, 5e-4, 128, 100)


def test_paper_thief_rate_drops_tenfold_once_at_epoch_fifty_as_the_authors_milestones_do():
    """MultiStepLR(milestones=[50, 120, 180, ...], gamma=0.1) over 100 epochs: one drop, at epoch 50."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer, scheduler = make_optimizer([weight], PAPER_THIEF, steps_per_epoch=3)
    reference_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PAPER_THIEF.lr)
    reference = torch.optim.lr_scheduler.MultiStepLR(reference_optimizer, milestones=[50, 120, 180, 240], gamma=0.1)
    for epoch in range(PAPER_THIEF.epochs):
        assert abs(optimizer.param_groups[0]["lr"] - reference_optimizer.param_groups[0]["lr"]) < 1e-15, epoch
        for _ in range(3):
            optimizer.step()
            scheduler.step()
        reference_optimizer.step()
        reference.step()


def test_paper_thief_exceptions_per_backbone_and_fast_recipes_unchanged_by_the_backbone():
    assert recipe_for("paper", "thief", "lp", False, "resnet101") == replace(PAPER_THIEF, lr=0.01)
    assert recipe_for("paper", "thief", "fft", False, "vit_large_patch16_224") == replace(PAPER_THIEF, batch_size=64)
    for backbone in (None, "resnet101", "vit_large_patch16_224", "tf_efficientnet_lite0"):
        assert recipe_for("fast", "thief", "lp", False, backbone) == FAST_LINEAR
        assert recipe_for("fast", "victim", "fft", False, backbone) == FAST_FINETUNE


def test_step_schedule_divides_the_rate_by_ten_every_thirty_epochs():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer, scheduler = make_optimizer([weight], PAPER_VICTIM, steps_per_epoch=2)
    rates = []
    for _ in range(100 * 2):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == rates[59] == 0.002
    assert abs(rates[60] - 0.0002) < 1e-12 and abs(rates[120] - 0.00002) < 1e-12 and abs(rates[199] - 2e-6) < 1e-12


def test_soft_targets_reduce_to_cross_entropy_on_one_hot_rows():
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, labels), soft_cross_entropy(logits, one_hot))


def test_training_reports_progress_within_an_epoch_so_a_cancel_lands_between_steps():
    inputs, targets = torch.randn(40, 6), torch.nn.functional.one_hot(torch.arange(40) % 3, 3).float()
    recipe = replace(recipe_for("fast", "thief", "lp", scratch=False), batch_size=8, epochs=2)

    def progress(report_seconds: float) -> list[int]:
        events = fit(torch.nn.Linear(6, 3), inputs, targets, recipe, lambda x, train: x, torch.device("cpu"), 0, 3,
                     report_seconds=report_seconds)
        return [event["done"] for event in events]

    assert progress(0.0) == list(range(1, 11))  # 5 steps per epoch, every one reported
    assert progress(3600.0) == [5, 10]  # at least at the end of each epoch
