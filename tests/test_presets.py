"""Sweep presets expand to exactly the paper's cells and recipe, and to the offline grid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fmsteal.service.presets import AUTHORS_WEIGHTS, PRESETS
from fmsteal.engine.recipes import recipe_for
from fmsteal.service.sweep import REPO, Grid
from fmsteal.adversary.thief import curve_checkpoints
from fmsteal.engine.zoo import get_backbone

PAPER_TABLE = REPO / "precomputed" / "paper" / "paper_agreement.csv"


@pytest.mark.parametrize("mode", ["lp", "fft"])
def test_paper_preset_is_exactly_the_papers_cifar10_cells(mode: str) -> None:
    table = pd.read_csv(PAPER_TABLE)
    published = table[(table["dataset"] == "cifar10") & (table["victim_mode"] == mode)]
    cells = Grid.from_preset(f"paper-cifar10-{mode}").cells()
    paper_name = {zoo: paper for paper, zoo in AUTHORS_WEIGHTS.items()}  # the authors' weights of each backbone
    assert sorted((paper_name.get(c.victim, c.victim), paper_name.get(c.thief, c.thief)) for c in cells) == \
        sorted(zip(published["victim"], published["thief"]))
    assert len({c.job_id() for c in cells}) == len(published)
    for cell in cells:
        assert (cell.dataset, cell.data_dir, cell.query_pool) == ("cifar10", None, "imagenet32")
        assert (cell.budget, cell.output, cell.strategy, cell.seed) == (5000, "label", "random", 1)  # RNG_SEED 1
        # the authors' FFT table fine-tunes the thief too (cfgs/cifar10/resnet18.yaml: LP False on both sides)
        assert (cell.victim_mode, cell.thief_mode, cell.image_size, cell.preset) == (mode, mode, 224, "paper")
        # their victims see CIFAR-normalised images, their thieves raw [0, 1] pixels
        assert (cell.backbone("victim"), cell.backbone("thief")) == (f"{cell.victim}@cifar10", f"{cell.thief}@raw")
    assert set(published["budget"]) == {5000} and set(published["victim_output"]) == {"top1_label"}
    assert set(published["query_pool"]) == {"imagenet32"}


@pytest.mark.parametrize("mode", ["lp", "fft"])
def test_paper_preset_cells_train_with_the_authors_hyperparameters(mode: str) -> None:
    """The numbers of ../shared/reference/README.md, as the cells' recipes resolve them."""
    cell = Grid.from_preset(f"paper-cifar10-{mode}").cells()[0]
    victim = recipe_for(cell.preset, "victim", cell.victim_mode, get_backbone(cell.victim).family == "scratch")
    thief = recipe_for(cell.preset, "thief", cell.thief_mode, get_backbone(cell.thief).family == "scratch", cell.thief)
    assert (victim.optimizer, victim.lr, victim.momentum, victim.weight_decay) == ("sgd", 0.002, 0.9, 5e-4)
    assert (victim.batch_size, victim.epochs, victim.schedule, victim.step_every, victim.step_gamma) == \
        (64, 100, "step", 30, 0.1)
    assert cell.thief == "resnet34"
    assert (thief.optimizer, thief.lr, thief.momentum, thief.weight_decay) == ("sgd", 1e-3, 0.9, 5e-4)
    assert (thief.batch_size, thief.epochs, thief.schedule, thief.step_every, thief.step_gamma) == \
        (128, 100, "step", 50, 0.1)


def test_paper_preset_thieves_keep_the_authors_per_backbone_exceptions() -> None:
    """cfgs/cifar10/resnet101.yaml: thief lr 0.01; cfgs/cifar10/vitl16.yaml: thief batch 64; the rest as resnet34."""
    thieves = {cell.thief for name in ("paper-cifar10-lp", "paper-cifar10-fft") for cell in Grid.from_preset(name).cells()}
    recipes = {name: recipe_for("paper", "thief", "lp", False, get_backbone(name).timm_arch) for name in thieves}
    assert "resnet101" not in thieves  # the authors load torchvision's V2 weights
    assert (recipes["resnet101_tv2"].lr, recipes["resnet101_tv2"].batch_size) == (0.01, 128)
    assert (recipes["vit_large_patch16_224"].lr, recipes["vit_large_patch16_224"].batch_size) == (1e-3, 64)
    assert all(recipe.fp32 for recipe in recipes.values())  # their code runs fp32 (autocast wraps only the loss)
    for name in thieves - {"resnet101_tv2", "vit_large_patch16_224"}:
        assert (recipes[name].lr, recipes[name].batch_size) == (1e-3, 128), name
    # the exceptions are the thief's: victims on the same backbones keep the victim recipe
    assert recipe_for("paper", "victim", "lp", False, "resnet101") == recipe_for("paper", "victim", "lp", False)


def test_every_preset_backbone_is_in_the_zoo() -> None:
    for preset in PRESETS.values():
        for name in preset["victims"] + preset["thieves"]:
            assert get_backbone(name).name == name


def test_offline_preset_grid() -> None:
    grid = Grid.from_preset("offline-cifar10")
    cells = grid.cells()
    lites = {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"}
    assert len(cells) == 4 * 3 * 3 * 2
    assert {(c.victim, c.victim_mode) for c in cells} == {(v, "lp") for v in lites} | {("scratch_cnn", "fft")}
    assert {c.thief for c in cells} == lites and {c.thief_mode for c in cells} == {"lp"}
    assert {c.seed for c in cells} == {0, 1, 2} and {c.output for c in cells} == {"label", "probs"}
    assert {(c.budget, c.image_size, c.preset, c.dataset) for c in cells} == {(20000, None, "fast", "cifar10")}
    resolved = Path(grid.resolved(cells[0]).data_dir)
    assert resolved == (REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz").resolve()
    checkpoints = curve_checkpoints(20000)
    assert 500 in checkpoints and 5000 in checkpoints and checkpoints[-1] == 20000
    assert len([b for b in checkpoints if b >= 500]) >= 8


def test_confound_preset_separates_pretrained_features_from_resolution_and_training_mode() -> None:
    cells = Grid.from_preset("confound-cifar10").cells()
    assert len(cells) == 3 * 3
    assert {(c.victim, c.victim_mode) for c in cells} == {("tf_efficientnet_lite0", "lp"),
                                                         ("tf_efficientnet_lite0", "fft"), ("scratch_cnn", "fft")}
    assert {(c.thief, c.thief_mode, c.image_size) for c in cells} == {("tf_efficientnet_lite0", "lp", 32)}
    assert {c.seed for c in cells} == {0, 1, 2} and {(c.budget, c.output, c.preset) for c in cells} == \
        {(20000, "label", "fast")}
    assert 5000 in curve_checkpoints(20000)
    offline = {(c.data_dir, c.dataset, c.query_pool, c.strategy) for c in Grid.from_preset("offline-cifar10").cells()}
    assert {(c.data_dir, c.dataset, c.query_pool, c.strategy) for c in cells} == offline


def test_offline_cells_are_victim_major_so_each_victim_is_trained_once() -> None:
    cells = Grid.from_preset("offline-cifar10").cells()
    victims = [(c.victim, c.seed) for c in cells]
    firsts = [key for i, key in enumerate(victims) if i == 0 or victims[i - 1] != key]
    assert len(firsts) == len(set(victims)) == 12


def test_defence_preset_sets_each_defence_at_two_strengths_against_a_pretrained_and_a_scratch_victim() -> None:
    cells = Grid.from_preset("defences-cifar10").cells()
    assert {(c.victim, c.victim_mode) for c in cells} == {("tf_efficientnet_lite0", "lp"), ("scratch_cnn", "fft")}
    assert {(c.thief, c.thief_mode, c.budget) for c in cells} == {("tf_efficientnet_lite0", "lp", 5000)}
    assert {c.seed for c in cells} == {0, 1, 2} and {c.output for c in cells} == {"label", "probs"}
    strengths: dict[str, set] = {}
    for cell in cells:
        strengths.setdefault(cell.defence, set()).add(cell.defence_params)
    assert "none" in strengths
    assert len([name for name, params in strengths.items() if name != "none" and len(params) >= 2]) >= 5
    assert {c.evaluations for c in cells} == {"fidelity"}  # the trade-off; transfer is the consequences grid's


def test_consequences_preset_measures_every_default_evaluation_for_pretrained_and_scratch_victims() -> None:
    cells = Grid.from_preset("consequences-cifar10").cells()
    assert {c.victim_mode for c in cells} == {"lp", "fft"} and {c.seed for c in cells} == {0, 1, 2}
    assert {c.evaluations for c in cells} == {"default"} and "transfer" in cells[0].evaluation_names()
