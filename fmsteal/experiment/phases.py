"""The experiment as named phases: data, embed, victim, steal, evaluate, card.

Each phase is a short generator over a shared `RunState` (yielding plain-data events) and a cost
model over a `Pricing` (seconds on this machine for the run's `Plan`). `fmsteal.experiment.pipeline.run`
walks `PHASES` in order; `fmsteal.experiment.estimate` sums the same phases' costs. Evaluation reads the
victim's own test predictions (the experimenter's privilege); the thief reaches the victim only
through a `BlackBoxVictim`.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch

from fmsteal import __version__
from fmsteal.attack.blackbox import BlackBoxVictim
from fmsteal.attack.strategies import STRATEGIES
from fmsteal.attack.thief import Thief, steal
from fmsteal.engine.data import ImageSet, load_pool, load_splits, stratified_subset
from fmsteal.engine.embed import Embedder
from fmsteal.engine.recipes import recipe_for
from fmsteal.engine.victim import TrainedVictim, train_victim
from fmsteal.engine.zoo import get_backbone
from fmsteal.evaluation.metrics import accuracy, agreement, confusion, macro_f1, per_class_agreement
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.experiment import warm
from fmsteal.experiment.plan import Plan, make_plan, pool_split
from fmsteal.experiment.pricing import Pricing

__all__ = ["Phase", "PHASES", "RunState", "split_pool"]

VALIDATION_SHARE = 0.1  # the thief keeps every 10th answer as its validation set


@dataclass
class RunState:
    """What the phases of one run hand each other."""

    config: object
    device: torch.device
    estimate: dict
    timings: dict = field(default_factory=dict)
    plan: Plan | None = None
    dataset: str = ""
    train: ImageSet | None = None
    test: ImageSet | None = None
    victim_train: ImageSet | None = None
    pool_source: ImageSet | None = None  # pool images embedded separately (None: part of the train split)
    pool: ImageSet | None = None
    data_key: dict | None = None
    embedders: dict = field(default_factory=dict)  # role -> Embedder (or None)
    victim: TrainedVictim | None = None
    victim_test: torch.Tensor | None = None
    victim_accuracy: float = 0.0
    black_box: BlackBoxVictim | None = None
    thief: Thief | None = None
    thief_test: torch.Tensor | None = None
    curve: list = field(default_factory=list)
    results: dict = field(default_factory=dict)  # evaluation name -> result
    card: dict | None = None


@dataclass(frozen=True)
class Phase:
    """A named step of the run: its events, its cost, and the line shown while it runs."""

    name: str
    message: Callable[[object], str]  # config -> text
    run: Callable[[RunState], Iterator[dict]]
    cost: Callable[[Pricing], float]


def split_pool(config, train: ImageSet) -> tuple[ImageSet, ImageSet | None, ImageSet]:
    """(victim's training set, images to pre-embed as the pool source or None, the query pool).

    The held-out pool is a seeded random part of the train split the victim never trains on.
    """
    if config.query_pool != "heldout":
        pool = load_pool(config.query_pool)
        return train, pool, pool
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))
    cut, _ = pool_split(len(train))
    return train.subset(order[cut:].sort().values), None, train.subset(order[:cut].sort().values)


# -- data ---------------------------------------------------------------------------------------

def run_data(state: RunState) -> Iterator[dict]:
    config = state.config
    splits = load_splits(config.source)
    state.dataset = splits.name
    state.train = stratified_subset(splits.train, config.train_per_class)
    state.test = stratified_subset(splits.test, config.test_per_class)
    state.victim_train, state.pool_source, state.pool = split_pool(config, state.train)
    state.plan = make_plan(config, state.device.type, (len(state.train), len(state.test), len(state.test.class_names)),
                           pool_size=len(state.pool), n_decoded=len(splits.train) + len(splits.test))
    state.data_key = warm.data_key(config)  # once per run: a folder's stamp walks all its files
    yield {"kind": "log", "level": "info", "message": (
        f"{len(state.victim_train):,} victim training images, a query pool of {len(state.pool):,}, "
        f"{len(state.test):,} test images ({len(state.test.class_names)} classes) on {state.device.type} "
        f"({torch.get_num_threads()} threads).")}


def cost_data(p: Pricing) -> float:
    images = p.plan.n_decoded
    return p.load_bytes(images * p.stored_pixels) if p.decoded else p.decode(images)


# -- embed --------------------------------------------------------------------------------------

def run_embed(state: RunState) -> Iterator[dict]:
    plan, shared = state.plan, {}
    for role, name, size in (("victim", state.config.victim, plan.victim_size),
                             ("thief", state.config.thief, plan.thief_size)):
        if (name, size) not in shared:
            shared[(name, size)] = Embedder(get_backbone(name), size, state.device)
        state.embedders[role] = shared[(name, size)]
    for name, size in plan.embeddings:
        embedder = shared[(name, size)]
        for images, what in ((state.train, "train split"), (state.test, "test split"), (state.pool_source, "query pool")):
            if images is not None:
                yield from embedder.register(images, f"{embedder.spec.label}: {what}")
        warm.record(state.data_key, "embed", embedder.files, backbone=name, size=size)
    if state.config.victim_mode != "lp":
        state.embedders["victim"] = None


def cost_embed(p: Pricing) -> float:
    seconds = 0.0
    for name, size in p.plan.embeddings:
        dim = get_backbone(name).feature_dim
        seconds += p.load_model(name, size) + p.hashing(p.plan.n_embedded)
        if (name, size) in p.embedded:
            seconds += p.load_bytes(p.plan.n_embedded * dim * 4)
        else:
            seconds += p.forward(name, size, p.plan.n_embedded)
    return seconds


# -- victim -------------------------------------------------------------------------------------

def run_victim(state: RunState) -> Iterator[dict]:
    config, spec = state.config, get_backbone(state.config.victim)
    recipe = recipe_for(config.preset, "victim", config.victim_mode, spec.family == "scratch")
    state.victim = yield from train_victim(spec, config.victim_mode, state.victim_train, state.embedders["victim"],
                                           recipe, state.plan.victim_size, state.device, config.seed)
    warm.record(state.data_key, "victim", [state.victim.cache_file], **warm.victim_fields(config, state.plan.victim_size))
    state.victim_test = state.victim.logits(state.test.images).argmax(1)
    state.victim_accuracy = accuracy(state.victim_test, state.test.labels)
    yield {"kind": "log", "level": "info", "message": f"Victim test accuracy: {state.victim_accuracy:.1%}"}


def cost_victim(p: Pricing) -> float:
    plan, config = p.plan, p.plan.config
    spec = get_backbone(config.victim)
    recipe = recipe_for(config.preset, "victim", config.victim_mode, spec.family == "scratch")
    if config.victim_mode == "lp":
        training = 0.0 if p.victim_trained else p.linear(spec.feature_dim, plan.n_victim_train * recipe.epochs)
        return training + p.hashing(plan.n_victim_train + plan.n_test)
    size = plan.victim_size
    training = 0.0 if p.victim_trained else p.train(config.victim, size, plan.n_victim_train * recipe.epochs)
    return p.load_model(config.victim, size) + training + p.forward(config.victim, size, plan.n_test)


# -- steal --------------------------------------------------------------------------------------

def run_steal(state: RunState) -> Iterator[dict]:
    config, plan, test = state.config, state.plan, state.test
    spec = get_backbone(config.thief)
    num_classes = len(test.class_names)
    state.black_box = BlackBoxVictim(state.victim.probabilities, num_classes, config.output, config.budget,
                                     config.top_k, config.decimals)
    recipe = recipe_for(config.preset, "thief", config.thief_mode, spec.family == "scratch")
    state.thief = Thief(spec, config.thief_mode, plan.thief_size, state.device, state.embedders["thief"], recipe,
                        num_classes, config.seed)

    def evaluate(current: Thief) -> dict:
        predictions = current.logits(test.images).argmax(1)
        state.thief_test = predictions
        return {"agreement": agreement(predictions, state.victim_test),
                "thief_accuracy": accuracy(predictions, test.labels),
                "macro_f1": macro_f1(predictions, test.labels, num_classes), "victim_accuracy": state.victim_accuracy}

    for event in steal(state.black_box, state.pool.images, state.thief, config.budget, config.strategy, config.seed,
                       evaluate):
        if event["kind"] == "checkpoint":
            state.curve.append({k: event[k] for k in ("queries", "agreement", "thief_accuracy", "macro_f1")})
        yield event


def cost_steal(p: Pricing) -> float:
    plan, config = p.plan, p.plan.config
    thief = get_backbone(config.thief)
    recipe = recipe_for(config.preset, "thief", config.thief_mode, thief.family == "scratch")
    size, rungs = plan.thief_size, plan.rungs
    answers = (p.hashing(config.budget) if config.victim_mode == "lp"
               else p.forward(config.victim, plan.victim_size, config.budget))
    seconds = answers
    if config.thief_mode == "lp":
        seconds += sum(p.linear(thief.feature_dim, (1 - VALIDATION_SHARE) * r * recipe.epochs) + p.hashing(r + plan.n_test)
                       for r in rungs)
    else:
        seconds += p.load_model(config.thief, size)
        seconds += sum(p.train(config.thief, size, (1 - VALIDATION_SHARE) * r * recipe.epochs)
                       + p.forward(config.thief, size, VALIDATION_SHARE * r * recipe.epochs + plan.n_test) for r in rungs)
    if config.strategy != "random":  # a strategy looks at the pool before every rung but the first
        seconds += (len(rungs) - 1) * STRATEGIES.get(config.strategy).meta["cost"](p)
    return seconds


# -- evaluate -----------------------------------------------------------------------------------

def run_evaluate(state: RunState) -> Iterator[dict]:
    config = state.config
    context = EvaluationContext(
        test=state.test, victim=state.victim, thief=state.thief, victim_test=state.victim_test,
        thief_test=state.thief_test, victim_probs=state.victim.probabilities(state.test.images),
        thief_probs=state.thief.logits(state.test.images).softmax(1), pool=state.pool, output=config.output,
        queries_spent=state.black_box.queries_used, num_classes=len(state.test.class_names), device=state.device,
        seed=config.seed)
    for name in config.evaluation_names():
        entry = EVALUATIONS.get(name)
        yield {"kind": "log", "level": "info", "message": f"Evaluating: {entry.help}"}
        state.results[name] = yield from entry.fn(context, entry.defaults())


def cost_evaluate(p: Pricing) -> float:
    seconds = p.hashing(2 * p.plan.n_test)
    for name in p.plan.config.evaluation_names():
        entry = EVALUATIONS.get(name)
        seconds += entry.meta["cost"](p, entry.defaults()) if "cost" in entry.meta else 0.0
    return seconds


# -- card ---------------------------------------------------------------------------------------

def run_card(state: RunState) -> Iterator[dict]:
    config, test, plan = state.config, state.test, state.plan
    num_classes = len(test.class_names)
    device = state.device
    state.card = {
        "fmsteal_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "versions": _versions(),
        "device": str(device) if device.type == "cpu" else f"cuda:{torch.cuda.current_device()}",
        "threads": torch.get_num_threads(),
        "image_size": {"victim": plan.victim_size, "thief": plan.thief_size},
        "seed": config.seed,
        "dataset": state.dataset,
        "class_names": test.class_names,
        "estimate": state.estimate,
        "timings": state.timings,
        "victim_accuracy": state.victim_accuracy,
        "agreement": agreement(state.thief_test, state.victim_test),
        "thief_accuracy": accuracy(state.thief_test, test.labels),
        "macro_f1": macro_f1(state.thief_test, test.labels, num_classes),
        "per_class_agreement": per_class_agreement(state.thief_test, state.victim_test, num_classes),
        "curve": state.curve,
        "confusion": {"labels": test.class_names,
                      "matrix": confusion(state.victim_test, state.thief_test, num_classes).tolist()},
        "queries_spent": state.black_box.queries_used,
        "test_size": len(test),
        "pool_size": len(state.pool),
        "victim_train_size": len(state.victim_train),
        "backbone_images_forwarded": sum(e.images_forwarded for e in set(state.embedders.values()) if e),
        **state.results,
    }
    yield from ()


def _versions() -> dict:
    import timm
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__}


PHASES: tuple[Phase, ...] = (
    Phase("data", lambda c: f"Loading {c.source}", run_data, cost_data),
    Phase("embed", lambda c: "Computing frozen-backbone features (cached)", run_embed, cost_embed),
    Phase("victim", lambda c: f"Training the {get_backbone(c.victim).label} victim", run_victim, cost_victim),
    Phase("steal", lambda c: f"Stealing with {c.budget:,} queries ({c.output})", run_steal, cost_steal),
    Phase("evaluate", lambda c: "Comparing thief and victim on the test set", run_evaluate, cost_evaluate),
    Phase("card", lambda c: "Writing the run card", run_card, lambda p: 0.0),
)
