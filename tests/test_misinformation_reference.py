"""adaptive-misinformation against a port of the authors' code (sanjaykariyappa/adaptive_misinformation): the answer of
`admis/utils/defense.py` `selectiveMisinformation.__call__` (one threshold), and the misinformation function's training
step of `admis/utils/model.py` `train_step` with `train_model`'s SGD and StepLR, run on fixed inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine_fixtures import run_to_card

from fmsteal.adversary.defences import DefenceContext, build_defence
from fmsteal.engine.misinformation import complement_cross_entropy
from fmsteal.engine.recipes import Recipe
from fmsteal.engine.train import fit

K = 10


# -- the port: their lines, with their constants ---------------------------------------------------------------------

def reference_answer(y: torch.Tensor, y_mis_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """selectiveMisinformation.__call__ for one delta, use_adaptive=True."""
    probs_max, _ = torch.max(y, dim=1)
    y_mis = F.softmax(y_mis_logits, dim=1)
    h = 1 / (1 + torch.exp(-10000 * (delta - probs_max.detach())))
    h = h.unsqueeze(dim=1).float()
    return ((1.0 - h) * y) + (h * y_mis.float())


def reference_training(model_poison: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int,
                       epochs: int, lr: float, momentum: float, lr_step: int, lr_gamma: float,
                       orders: list[torch.Tensor]) -> torch.nn.Module:
    """train_model's optimiser and scheduler for model_poison and train_step's poison update, over the batches
    `orders` gives (their DataLoader shuffles; here it takes fit's order so that the two can be compared)."""
    criterion = torch.nn.CrossEntropyLoss(reduction="mean")
    optimizer_poison = torch.optim.SGD(model_poison.parameters(), lr=lr, momentum=momentum, weight_decay=5e-4)
    scheduler_poison = torch.optim.lr_scheduler.StepLR(optimizer_poison, step_size=lr_step, gamma=lr_gamma)
    for epoch in range(1, epochs + 1):
        order = orders[epoch - 1]
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            inputs_all, targets_all = inputs[index], targets[index]
            outputs_poison = model_poison(inputs_all)
            outputs_poison_softmax = F.softmax(outputs_poison, dim=1)
            outputs_poison_comp = torch.log(1 - outputs_poison_softmax + 1e-7)
            loss_poison = criterion(outputs_poison_comp, targets_all)
            optimizer_poison.zero_grad()
            loss_poison.backward()
            optimizer_poison.step()
        scheduler_poison.step()  # their scheduler.step(epoch) after each epoch: the same learning rates
    return model_poison


# -- the checks ------------------------------------------------------------------------------------------------------

def test_the_answer_is_the_references_on_fixed_inputs():
    generator = torch.Generator().manual_seed(0)
    scale = torch.rand(3000, 1, generator=generator) * 6
    y = (torch.randn(3000, K, generator=generator) * scale).softmax(1)
    y = torch.cat([y, torch.full((2, K), 1 / K), torch.eye(K)[:2]])  # ties at the threshold's far sides
    mis_logits = torch.randn(len(y), K, generator=generator) * 3
    images = torch.rand(len(y), 3, 4, 4, generator=generator)
    table = dict(zip(map(tuple, images.flatten(1).tolist()), mis_logits.softmax(1)))
    context = DefenceContext(K, 0, misinformation=lambda x: torch.stack([table[tuple(r)] for r in x.flatten(1).tolist()]))
    for tau in (0.3, 0.5, 0.8, 0.99):
        defence = build_defence("adaptive-misinformation", {"tau": tau}, context)
        ours = torch.cat([defence.answer(images[i:i + 500], y[i:i + 500]) for i in range(0, len(y), 500)])
        expected = reference_answer(y, mis_logits, tau)
        assert torch.allclose(ours, expected, atol=1e-6), tau
        below = int((y.max(1).values <= tau).sum())  # their ood_count
        assert defence.report()["out_of_distribution"] == below and 0 < below < len(y)


def test_the_misinformation_function_trains_as_the_references_step_by_step():
    generator = torch.Generator().manual_seed(1)
    features, labels = torch.randn(300, 32, generator=generator), torch.randint(0, K, (300,), generator=generator)
    recipe = Recipe("sgd", 0.1, 0.9, 5e-4, 64, 3, "step", step_every=2, step_gamma=0.1)  # a drop after epoch 2
    torch.manual_seed(5)
    ours = torch.nn.Linear(32, K)
    theirs = torch.nn.Linear(32, K)
    theirs.load_state_dict(ours.state_dict())
    on_true_class = lambda model: model(features).softmax(1).gather(1, labels[:, None]).mean()  # noqa: E731
    before = on_true_class(ours)
    seed = 9
    order_generator = torch.Generator().manual_seed(seed)  # fit's batch order, drawn the way fit draws it
    orders = [torch.randperm(len(features), generator=order_generator) for _ in range(recipe.epochs)]
    events = fit(ours, features, labels, recipe, lambda x, train: x, torch.device("cpu"), seed, K,
                 loss=complement_cross_entropy)
    for _ in events:
        pass
    reference_training(theirs, features, labels, 64, 3, 0.1, 0.9, 2, 0.1, orders)
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.allclose(a, b, atol=1e-5), name
    # what the loss teaches: less mass on the true class (random labels here, so not far below uniform)
    assert on_true_class(ours) < 0.95 * before


def test_a_run_trains_the_misinformation_function_beside_the_victim(tiny_config):
    """On real CIFAR-10 images: the function the run trains rarely names the victim's top class, and the defended
    API answers the queries at or below tau with it."""
    card, _ = run_to_card(tiny_config(defence="adaptive-misinformation", defence_params="tau=0.6", output="probs",
                                      evaluations="none", seed=45))
    defence = card["defence"]
    assert defence["name"] == "adaptive-misinformation" and defence["params"] == {"tau": 0.6, "nu": 10_000.0}
    assert defence["misinformation_agreement"] < 0.2  # trained away from the true class, so from most top classes
    assert 0 < defence["out_of_distribution_fraction"] < 1
    # an answer below tau is the misinformation function's, whose top class is mostly not the victim's
    assert defence["answers_changed"] > 0.5 * defence["out_of_distribution_fraction"]
    assert defence["api_accuracy"] < defence["undefended_accuracy"]
