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
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import torch

from fmsteal import __version__
from fmsteal.adversary.blackbox import Answers, BlackBoxVictim, api_predictions
from fmsteal.adversary.defences import DEFENCES, DefenceContext, build_defence
from fmsteal.adversary.defences.mad import random_head_surrogate
from fmsteal.adversary.defences.watermark import verify_watermark
from fmsteal.adversary.strategies import STRATEGIES
from fmsteal.adversary.thief import VALIDATION_EVERY, Thief
from fmsteal.adversary.thieves import THIEVES, applicable, mean_answers, repeats, trained_apart
from fmsteal.engine.data import ImageSet, load_pool, load_splits, stratified_subset
from fmsteal.engine.embed import Embedder
from fmsteal.engine.misinformation import train_misinformation
from fmsteal.engine.pack import await_pack
from fmsteal.engine.recipes import Recipe, full_precision, recipe_for
from fmsteal.engine.victim import TrainedVictim, train_victim
from fmsteal.engine.zoo import get_backbone
from fmsteal.evaluation.metrics import accuracy, agreement, confusion, macro_f1, per_class_agreement
from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.experiment import speed, warm
from fmsteal.experiment.plan import Plan, make_plan, pool_split
from fmsteal.experiment.pricing import Pricing
from fmsteal.fields import parse_params

__all__ = ["Phase", "PHASES", "RunState", "comparison", "device_name", "split_pool", "versions"]

CHECKPOINT = ("agreement", "thief_accuracy", "macro_f1", "victim_accuracy")  # the numbers of one curve point


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
    misinformation: Callable | None = None  # the defender's misinformation function, where its defence uses one
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
    yield from await_pack()  # a warm pack being unpacked at launch holds what this run would compute
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
    for role, name, size in (("victim", state.config.backbone("victim"), plan.victim_size),
                             ("thief", state.config.backbone("thief"), plan.thief_size)):
        if (name, size) not in shared:
            spec = get_backbone(name)
            batch = speed.forward_batch(spec, size, state.device.type) if (name, size) in plan.embeddings else None
            shared[(name, size)] = Embedder(spec, size, state.device, batch, fp32=full_precision(state.config.preset))
        state.embedders[role] = shared[(name, size)]
    for name, size in plan.embeddings:
        embedder = shared[(name, size)]
        seconds, forwarded = embedder.forward_seconds, embedder.images_forwarded
        for images, what in ((state.train, "train split"), (state.test, "test split"), (state.pool_source, "query pool")):
            if images is not None:
                yield from embedder.register(images, f"{embedder.spec.label}: {what}")
        warm.record(state.data_key, "embed", embedder.files, backbone=name, size=size)
        speed.observe_forward(embedder.spec, size, "cpu" if state.device.type == "cpu" else "cuda",
                              embedder.images_forwarded - forwarded, embedder.forward_seconds - seconds)
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

def defence_wants(config, what: str) -> bool:
    """Whether the config's defence asks the run for `what` in its registry entry (`surrogate`, `benign`,
    `misinformer`: see `fmsteal.adversary.defences.base`)."""
    return bool(DEFENCES.get(config.defence).meta.get(what))


def run_victim(state: RunState) -> Iterator[dict]:
    config, spec = state.config, get_backbone(state.config.backbone("victim"))
    recipe = recipe_for(config.preset, "victim", config.victim_mode, spec.family == "scratch")
    state.victim = yield from train_victim(spec, config.victim_mode, state.victim_train, state.embedders["victim"],
                                           recipe, state.plan.victim_size, state.device, config.seed)
    warm.record(state.data_key, "victim", [state.victim.cache_file], **warm.victim_fields(config, state.plan.victim_size))
    if defence_wants(config, "misinformer"):
        state.misinformation = yield from train_misinformation(state.victim, state.victim_train,
                                                               misinformation_recipe(config), config.seed)
    state.victim_test = state.victim.logits(state.test.images).argmax(1)
    state.victim_accuracy = accuracy(state.victim_test, state.test.labels)
    yield {"kind": "log", "level": "info", "message": f"Victim test accuracy: {state.victim_accuracy:.1%}"}


def cost_victim(p: Pricing) -> float:
    plan, config = p.plan, p.plan.config
    spec, recipe = get_backbone(config.backbone("victim")), p.recipe("victim")
    if config.victim_mode == "lp":
        training = 0.0 if p.victim_trained else (p.linear(spec.feature_dim, plan.n_victim_train * recipe.epochs)
                                                 + p.views("victim", plan.n_victim_train))
        return training + p.hashing(plan.n_victim_train + plan.n_test) + cost_misinformation(p)
    size = plan.victim_size
    training = 0.0 if p.victim_trained else p.train(config.victim, size, plan.n_victim_train * recipe.epochs)
    return (p.load_model(config.victim, size) + training + p.forward(config.victim, size, plan.n_test)
            + cost_misinformation(p))


def misinformation_recipe(config) -> Recipe:
    """The misinformation head learns as a linear probe of the victim's kind (`fmsteal.engine.misinformation`)."""
    return recipe_for(config.preset, "victim", "lp", False)


def cost_misinformation(p: Pricing) -> float:
    """Training the defender's misinformation head (where its defence uses one) and its answer to every query. A
    linear-probe victim's head trains on the features (and augmented views) the victim trained on, embedded with it;
    a fine-tuned victim's body embeds its training set, the test set and the queries for it."""
    plan, config = p.plan, p.plan.config
    if not defence_wants(config, "misinformer"):
        return 0.0
    name = config.backbone("victim")
    seconds = p.linear(get_backbone(name).feature_dim, plan.n_victim_train * misinformation_recipe(config).epochs)
    if config.victim_mode == "lp":
        return seconds
    return seconds + p.forward(name, plan.victim_size, plan.n_victim_train + plan.n_test + config.budget)


# -- steal --------------------------------------------------------------------------------------

def defence_for(state: RunState):
    """A fresh instance of the config's defence (one per client), built with the defender's own knowledge:
    its backbone for a surrogate where the defence uses one (MAD), the test images as honest clients' streams where
    it measures false alarms (PRADA; shuffled by the seed), the misinformation function trained beside the victim
    (adaptive misinformation)."""
    config, victim, test = state.config, state.victim, state.test
    surrogate = None
    if defence_wants(config, "surrogate") and victim.embedder is not None:
        surrogate = random_head_surrogate(victim.embedder.features_of, victim.spec.feature_dim,
                                          len(test.class_names), config.seed)
    benign = (test.images, victim.probabilities(test.images)) if defence_wants(config, "benign") else None
    context = DefenceContext(len(test.class_names), config.seed, surrogate, benign, state.misinformation)
    return build_defence(config.defence, parse_params(config.defence_params), context)


def black_box_for(state: RunState) -> BlackBoxVictim:
    """A new client of the victim's API: the config's output mode, budget and a fresh instance of its defence."""
    config, answer = state.config, state.config.defence_plan()
    return BlackBoxVictim(state.victim.probabilities, len(state.test.class_names), answer.output, config.budget,
                          answer.top_k, answer.decimals, defence=defence_for(state))


def run_steal(state: RunState) -> Iterator[dict]:
    """`fmsteal.attack` against the victim trained here, behind a black box carrying the config's defence;
    scored against the victim's own test labels (the experimenter's privilege, no evaluation queries)."""
    from fmsteal.experiment.attack import attack

    config = state.config
    state.black_box = black_box_for(state)
    events = attack(state.black_box, pool=state.pool, test=state.test, thief=config.backbone("thief"), budget=config.budget,
                    strategy=config.strategy, seed=config.seed, thief_mode=config.thief_mode,
                    image_size=state.plan.thief_size, device=state.device.type, preset=config.preset,
                    reference=state.victim_test, embedder=state.embedders["thief"])
    for event in events:
        if event["kind"] == "result":
            state.thief, state.thief_test, state.curve = event["thief"], event["test_predictions"], event["card"]["curve"]
        elif event["kind"] != "phase":  # the attack's own steps are all within this phase
            yield event


def cost_steal(p: Pricing) -> float:
    return cost_answers(p) + cost_thief_steal(p)


def cost_answers(p: Pricing) -> float:
    """The victim's side of a budget's answers: an LP victim's cached features looked up, or a forward pass."""
    plan, config = p.plan, p.plan.config
    return (p.hashing(config.budget) if config.victim_mode == "lp"
            else p.forward(config.victim, plan.victim_size, config.budget))


def cost_thief_steal(p: Pricing) -> float:
    """The thief's side of the steal: training and scoring at every rung, its views, its query selection."""
    plan, config = p.plan, p.plan.config
    seconds = sum(p.thief_training(rung, plan.n_test) for rung in plan.rungs)
    seconds += p.views("thief", (1 - 1 / VALIDATION_EVERY) * config.budget)  # each image's views embedded once
    if config.thief_mode != "lp":
        seconds += p.load_model(config.thief, plan.thief_size)
    if config.strategy != "random":  # a strategy looks at the pool before every rung but the first
        seconds += (len(plan.rungs) - 1) * STRATEGIES.get(config.strategy).meta["cost"](p)
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
    if config.defence != "none":
        yield {"kind": "log", "level": "info", "message": f"Measuring what the {config.defence} defence costs honest users"}
        state.results["defence"] = yield from defence_results(state)
    for name in config.evaluation_names():
        entry = EVALUATIONS.get(name)
        yield {"kind": "log", "level": "info", "message": f"Evaluating: {entry.help}"}
        embedders = {e for e in state.embedders.values() if e}
        known = {e: len(e.files) for e in embedders}
        params = entry.defaults()
        state.results[name] = yield from entry.fn(context, params)
        warm.record(state.data_key, "evaluation", [f for e in embedders for f in e.files[known[e]:]],
                    **warm.evaluation_fields(config, state.plan, name, params))


def defence_results(state: RunState) -> Iterator[dict]:
    """Both sides of a defence: what it cost honest users, what it did to the thief (and, for a watermark,
    whether the stolen copy betrays itself while an innocent model trained on true labels does not)."""
    config, test, victim, thief = state.config, state.test, state.victim, state.thief
    api = api_predictions(victim.probabilities, test.images, defence_for(state))
    result = {"name": config.defence, "params": config.defence_plan().params, **state.black_box.defence_report(),
              "api_accuracy": accuracy(api, test.labels), "undefended_accuracy": state.victim_accuracy,
              "agreement_with_api": agreement(state.thief_test, api),
              **(yield from strongest_thief(state))}
    if config.defence == "watermark":
        marks = state.black_box.defence_evidence()
        innocent = Thief(thief.spec, thief.mode, thief.image_size, thief.device, thief.embedder, thief.recipe,
                         thief.num_classes, config.seed + 1)
        honest = state.pool.subset(torch.arange(min(config.budget, len(state.pool))))
        yield from innocent.train(honest.images, honest.labels, None, label="Training an innocent model on true labels")
        for name, model in (("thief", thief), ("innocent", innocent)):
            verdict = verify_watermark(lambda images, m=model: m.logits(images).argmax(1), *marks, thief.num_classes)
            result[f"watermark_{name}"] = verdict
    return result


def strongest_thief(state: RunState) -> Iterator[dict]:
    """Every registered thief that applies to the API's defence, on the answers the default one bought (an argmax
    thief ignores poisoned probabilities, an invert thief undoes an invertible defence, a simulate thief fits through
    the defence's rule) or, for a thief with `repeats`, on the same budget as a new client asking each of the first
    of its images that many times: each one's agreement and accuracy, and the strongest, the defender's worst case.
    On label answers a thief that buys nothing of its own learns the default one's targets, which stands for it."""
    thief, test, defence = state.thief, state.test, state.config.defence_plan()
    scores = {"distil": comparison(state.thief_test, state.victim_test, test)}
    images, answers = thief.bought
    apart = trained_apart(defence)
    for learns in THIEVES.names():
        if learns in scores or not applicable(learns, defence):
            continue
        if learns not in apart:
            scores[learns] = scores["distil"]
            continue
        other = replace(thief, network=None, bought=None)
        asks = repeats(learns)
        if asks:
            yield from other.learn(*ask_repeatedly(black_box_for(state), images, asks), learns, defence)
        else:
            yield from other.learn(images, answers, learns, defence)
        scores[learns] = comparison(other.logits(test.images).argmax(1), state.victim_test, test)
    thieves = {name: {key: score[key] for key in ("agreement", "thief_accuracy", "macro_f1")}
               for name, score in scores.items()}
    strongest = max(thieves, key=lambda name: thieves[name]["agreement"])
    return {"thieves": thieves, "strongest_thief": strongest, "worst_case_agreement": thieves[strongest]["agreement"]}


def ask_repeatedly(api: BlackBoxVictim, images: torch.Tensor, asks: int) -> tuple[torch.Tensor, Answers]:
    """The first `len(images) // asks` images, each asked `asks` times in one budget, and their mean answers."""
    distinct = images[:len(images) // asks]
    answers = api(torch.cat([distinct] * asks).float() / 255)
    return distinct, mean_answers(answers, asks, api.num_classes)


def cost_evaluate(p: Pricing) -> float:
    seconds = p.test_pass("victim") + p.test_pass("thief")  # both sides' probabilities on the test images
    if p.plan.config.defence != "none":  # the honest client's answers; a watermark's innocent model; other thieves
        extra_thieves = trained_apart(p.plan.config.defence_plan())
        seconds += p.test_pass("victim") + (1 + len(extra_thieves)) * p.thief_training(p.plan.config.budget)
        seconds += sum(cost_answers(p) for name in extra_thieves if repeats(name))
    for name in p.plan.config.evaluation_names():
        entry = EVALUATIONS.get(name)
        seconds += entry.meta["cost"](p, entry.defaults()) if "cost" in entry.meta else 0.0
    return seconds


# -- card ---------------------------------------------------------------------------------------

def comparison(thief_test: torch.Tensor, victim_test: torch.Tensor, test: ImageSet) -> dict:
    """Thief vs victim on the test images: agreement, accuracies, macro-F1, per-class agreement, confusion."""
    classes = len(test.class_names)
    return {"victim_accuracy": accuracy(victim_test, test.labels), "agreement": agreement(thief_test, victim_test),
            "thief_accuracy": accuracy(thief_test, test.labels), "macro_f1": macro_f1(thief_test, test.labels, classes),
            "per_class_agreement": per_class_agreement(thief_test, victim_test, classes),
            "confusion": {"labels": test.class_names, "matrix": confusion(victim_test, thief_test, classes).tolist()}}


def run_card(state: RunState) -> Iterator[dict]:
    state.card = card_of(state)
    yield from ()


def card_of(state: RunState) -> dict:
    """The run card as far as the run has got (after the steal: everything but the evaluations' results)."""
    config, test, plan = state.config, state.test, state.plan
    return {
        "fmsteal_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "versions": versions(),
        "device": device_name(state.device),
        "threads": torch.get_num_threads(),
        "image_size": {"victim": plan.victim_size, "thief": plan.thief_size},
        "seed": config.seed,
        "dataset": state.dataset,
        "class_names": test.class_names,
        "estimate": state.estimate,
        "timings": state.timings,
        **comparison(state.thief_test, state.victim_test, test),
        "curve": state.curve,
        "queries_spent": state.black_box.queries_used,
        "test_size": len(test),
        "pool_size": len(state.pool),
        "victim_train_size": len(state.victim_train),
        "backbone_images_forwarded": sum(e.images_forwarded for e in set(state.embedders.values()) if e),
        **state.results,
    }


def device_name(device: torch.device) -> str:
    """The device as a card records it: `cpu`, or the CUDA device's index (`cuda:0`)."""
    return str(device) if device.type == "cpu" else f"cuda:{torch.cuda.current_device()}"


def versions() -> dict:
    """The versions a card records: python, torch, torchvision, timm (the installed packages', read without
    importing them)."""
    from importlib.metadata import version

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": version("torchvision"), "timm": version("timm")}


PHASES: tuple[Phase, ...] = (
    Phase("data", lambda c: f"Loading {c.source}", run_data, cost_data),
    Phase("embed", lambda c: "Computing frozen-backbone features (cached)", run_embed, cost_embed),
    Phase("victim", lambda c: f"Training the {get_backbone(c.victim).label} victim", run_victim, cost_victim),
    Phase("steal", lambda c: f"Stealing with {c.budget:,} queries ({c.output})", run_steal, cost_steal),
    Phase("evaluate", lambda c: "Comparing thief and victim on the test set", run_evaluate, cost_evaluate),
    Phase("card", lambda c: "Writing the run card", run_card, lambda p: 0.0),
)
