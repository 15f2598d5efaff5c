"""`mad`: Prediction Poisoning (Orekondy et al., ICLR 2020) as the authors' code runs it
(tribhuvanesh/prediction-poisoning, `defenses/victim/bb_mad.py`: oracle `extreme`, optimiser `linesearch`,
L1 distance, the surrogate objective).

Their oracle picks a target y* among the simplex's vertices by ||G^T (y* - y)||^2, G the Jacobian of the
surrogate's per-class NLL with respect to its last linear layer: row k is (p - e_k) h^T, so for two points
of the simplex the objective is ||y* - y||^2 ||h||^2 and neither the surrogate's prediction p nor its
features h change the choice. Without `keep_argmax` the target is the vertex farthest from y, that of the
least likely class; with it (their `argmax` oracle) the target is the uniform vector over the set of classes
that holds the top-1 (weighted up by 1e-5) farthest from y, all 2^(K-1) sets searched for K <= 10, and for
K > 10 their greedy search (grow the set one class at a time by the angular objective, at most 1024
candidates), which does depend on p (`DefenceContext.surrogate`; uniform without one). The answer is
y~ = (1 - a) y + a y*, a = min(1, epsilon / (||y* - y||_1 + 1e-7)). fmsteal's variant that ranks the
steps by the angle itself is `mad-angular`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fmsteal.adversary.defences.base import DEFENCES, Defence, DefenceContext
from fmsteal.fields import Field

if TYPE_CHECKING:
    import torch

__all__ = ["MAD", "PARAMS", "acts_on_labels", "invert_mad", "mad_reference", "random_head_surrogate",
           "surrogate_predictions"]

UPWEIGHT = 1e-5  # the reference's extra mass on the top-1 class of an argmax-preserving target
EXACT_UP_TO = 10  # classes: the reference searches every set up to here, greedily beyond
GREEDY_CANDIDATES = 1024  # the reference's max_iters of its greedy search
TOLERANCE = 1e-6  # float32 answers: y~_k - a loses digits, so a candidate's entries are known to about this
CHUNK_ELEMENTS = 2**23  # rows are searched in chunks of at most this many n x sets x K entries


def invert_mad(answers: "torch.Tensor", params: dict) -> "torch.Tensor":
    """The victim's probabilities behind `mad` answers without keep_argmax, for a thief who knows the defence (with
    keep_argmax the target is one of many sets: not inverted). The step toward e_k has a = epsilon / (2 (1 - y_k)) < 1, so
    y = (y~ - a e_k) / (1 - a) with a = epsilon / (2 (1 - y~_k) + epsilon). More than one class k can give a
    probability vector with k least likely (the map is not one-to-one); of those the most confident (lowest
    entropy) is taken, as a trained victim's answers mostly are."""
    import torch

    y = answers.double()
    n, k = y.shape
    alpha = params["epsilon"] / (2 * (1 - y) + params["epsilon"])  # n x K: the step, were class k the target
    alpha = alpha.clamp(max=1 - 1e-12)
    candidates = (y.unsqueeze(1) - alpha.unsqueeze(2) * torch.eye(k, dtype=y.dtype)) / (1 - alpha).unsqueeze(2)
    own = candidates.diagonal(dim1=1, dim2=2)  # n x K: class k's probability in its own candidate
    smallest = own <= candidates.min(2).values + TOLERANCE  # k is (up to rounding) its candidate's least likely class
    valid = (candidates >= -TOLERANCE).all(2) & smallest
    plausible = candidates.clamp(min=1e-12)
    entropy = (plausible * plausible.log()).sum(2).neg().masked_fill(~valid, float("inf"))
    pick = entropy.argmin(1)  # every row has a consistent class: its true target's
    return torch.where(valid.any(1, keepdim=True), candidates[torch.arange(n), pick].clamp(min=0), y).to(answers.dtype)


# MAD's parameters, and when it can act on a label answer (this module's `mad` and `mad-angular` alike)
PARAMS = (Field("epsilon", "float", 0.5, "L1 budget of the perturbation of each probability vector", minimum=0, maximum=2),
          Field("keep_argmax", "bool", False, "MAD-argmax: never change the top-1 class"))


def acts_on_labels(params: dict) -> bool:
    return not params["keep_argmax"] and params["epsilon"] > 0


def surrogate_predictions(context: DefenceContext, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
    """The defender's surrogate's probabilities for `images` (uniform without a surrogate: a fresh zero head's)."""
    if context.surrogate is None:
        return probs.new_full(probs.shape, 1 / probs.shape[1])
    return context.surrogate(images).to(probs)


@DEFENCES.register(
    "mad", help="Orekondy et al. 2020 (their code): poison answers within an L1 budget to turn the thief's gradient",
    params=PARAMS, acts_on_labels=acts_on_labels, surrogate=True, invert=invert_mad,
    invertible=lambda p: not p["keep_argmax"])
class MAD(Defence):
    def answer(self, images: "torch.Tensor", probs: "torch.Tensor") -> "torch.Tensor":
        greedy = self.params["keep_argmax"] and probs.shape[1] > EXACT_UP_TO  # the only search that reads it
        predicted = surrogate_predictions(self.context, images, probs) if greedy else None
        return mad_reference(probs, self.params["epsilon"], self.params["keep_argmax"], predicted)


def mad_reference(probs: "torch.Tensor", epsilon: float, keep_argmax: bool,
                  surrogate: "torch.Tensor | None" = None) -> "torch.Tensor":
    """`probs` (n x K) moved by the authors' rule; `surrogate` (n x K predictions) is read only by the greedy
    argmax-preserving search (keep_argmax with K > 10)."""
    import torch

    y = probs.double()
    if not keep_argmax:
        target = torch.nn.functional.one_hot(y.argmin(1), y.shape[1]).double()
    elif y.shape[1] <= EXACT_UP_TO:
        target = _farthest_set(y)
    else:
        predicted = surrogate.double() if surrogate is not None else torch.full_like(y, 1 / y.shape[1])
        target = _greedy_set(y, predicted)
    alpha = (epsilon / ((target - y).abs().sum(1, keepdim=True) + 1e-7)).clamp(0, 1)
    return ((1 - alpha) * y + alpha * target).to(probs.dtype)


def _set_targets(masks: "torch.Tensor", top: "torch.Tensor") -> "torch.Tensor":
    """Uniform vectors over each set of classes (`masks`, n x sets x K of 0/1), each row's top-1 class weighted up."""
    import torch

    weighted = masks + UPWEIGHT * torch.nn.functional.one_hot(top, masks.shape[-1]).double().unsqueeze(1)
    return weighted / weighted.sum(-1, keepdim=True)


def _farthest_set(y: "torch.Tensor") -> "torch.Tensor":
    """Per row, of the sets holding its top-1 class (in the reference's itertools.product order, the first of
    equals kept), the target farthest from y in L2."""
    import torch

    n, k = y.shape
    codes = torch.arange(2 ** k).unsqueeze(1)
    masks = ((codes >> torch.arange(k - 1, -1, -1)) & 1).double()  # bit 0 of the product order is class 0
    top = y.argmax(1)
    rows = max(1, CHUNK_ELEMENTS // (len(masks) * k))
    chosen = []
    for part, best in zip(y.split(rows), top.split(rows)):
        targets = _set_targets(masks.expand(len(part), -1, -1), best)
        score = (targets - part.unsqueeze(1)).pow(2).sum(2)
        score = score.masked_fill(masks[:, best].T == 0, -1.0)  # sets without the top-1 class are not candidates
        chosen.append(targets[torch.arange(len(part)), score.argmax(1)])
    return torch.cat(chosen)


def _greedy_set(y: "torch.Tensor", p: "torch.Tensor") -> "torch.Tensor":
    """The reference's greedy search for K > 10: from {top-1}, add the class whose set's target turns the
    thief's gradient most (2 - 2 cos(p - y*, p - y)); keep the best target seen; stop after GREEDY_CANDIDATES
    candidates or when every class is in the set."""
    import torch

    n, k = y.shape
    rows = torch.arange(n)
    y = (y + 1e-8) / (y + 1e-8).sum(1, keepdim=True)  # as the reference, against underflow
    top = y.argmax(1)
    fixed = torch.nn.functional.one_hot(top, k).double()
    honest = torch.nn.functional.normalize(p - y, dim=1)
    best, best_value, tried, size = y.clone(), torch.full((n,), -1.0, dtype=y.dtype), 0, 1
    while tried < GREEDY_CANDIDATES and size < k:
        masks = (fixed.unsqueeze(1) + torch.eye(k, dtype=y.dtype)).clamp(max=1)  # n x K: each class added in turn
        targets = _set_targets(masks, top)
        moved = torch.nn.functional.normalize(p.unsqueeze(1) - targets, dim=2)
        value = (moved - honest.unsqueeze(1)).pow(2).sum(2).masked_fill(fixed > 0, -1.0)  # 2 - 2 cos
        pick = value.argmax(1)
        gain = value[rows, pick]
        better = gain > best_value
        best[better] = targets[rows, pick][better]
        best_value = torch.where(better, gain, best_value)
        fixed[rows, pick] = 1
        tried, size = tried + k - size, size + 1
    return best


def random_head_surrogate(features: Callable[["torch.Tensor"], "torch.Tensor"], feature_dim: int, num_classes: int,
                          seed: int) -> Callable[["torch.Tensor"], "torch.Tensor"]:
    """A surrogate for MAD: a randomly initialised linear head (seeded) on `features` (e.g. the victim's
    own frozen backbone, `images -> n x feature_dim`), returning its softmax probabilities."""
    import torch

    head = torch.nn.Linear(feature_dim, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.empty_like(head.weight).uniform_(-1, 1, generator=torch.Generator().manual_seed(seed))
                          / feature_dim ** 0.5)
        head.bias.zero_()

    def predict(images: "torch.Tensor") -> "torch.Tensor":
        with torch.no_grad():
            return head(features(images).float().cpu()).softmax(1)

    return predict
