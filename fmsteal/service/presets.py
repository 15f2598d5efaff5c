"""Named sweep grids as plain data; `fmsteal.sweep.Grid.from_preset(name)` expands them into cells.

Each preset lists the axes crossed into cells (victims, thieves, budgets, seeds, outputs,
victim_modes; victim mode "auto" means the backbone's default: LP, or FFT for the scratch CNN)
and `fixed` config fields shared by every cell. Relative paths resolve against the repo root.
"""

from __future__ import annotations

RESNETS = ["resnet18", "resnet34", "resnet50", "resnet101"]
LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]

# The paper's CIFAR-10 grid as the authors' code runs it (../shared/reference/README.md and
# rajankita/foundation_model_stealing at 2b0bc9a; docs/paper_vs_code.md lists every difference that
# remains): 224 px, the authors' weights, input scaling and hyperparameters (`paper` recipes, fp32, with
# their per-backbone thief exceptions), ImageNet32 as the query pool, 5,000 top-1-label queries, random selection, seed 1
# (their configs' RNG_SEED). LP table: linear-probe thieves (their default); FFT table: the thief is
# fine-tuned too (their cfgs/cifar10/resnet18.yaml sets LP False for both sides).
# Inputs as the authors' code scales them: CIFAR-10 statistics for every victim, raw [0, 1] pixels for
# the thief (no Normalize in its transforms). The `paper` recipes also run fp32 on CUDA, as their code does.
PAPER_CIFAR10 = {
    "dataset": "cifar10", "query_pool": "imagenet32", "image_size": 224, "preset": "paper",
    "thief_mode": "lp", "strategy": "random", "victim_inputs": "cifar10", "thief_inputs": "raw",
}
PAPER_SEEDS = [1]
# The paper's backbone -> the zoo entry with the weights the authors' code loads: torchvision's current
# (V2) ResNet-50/101 and the ImageNet-1k fine-tuned CLIP; the paper's tables name the backbone only.
AUTHORS_WEIGHTS = {"resnet50": "resnet50_tv2", "resnet101": "resnet101_tv2",
                   "vit_base_patch16_clip_224": "vit_base_patch16_clip_224_ft"}


def _authors(names: list[str]) -> list[str]:
    return [AUTHORS_WEIGHTS.get(name, name) for name in names]


PRESETS: dict[str, dict] = {
    "paper-cifar10-lp": {
        "victims": _authors(RESNETS + ["vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224"]),
        "thieves": _authors(["resnet34", "vit_base_patch16_224", "vit_large_patch16_224", "vit_base_patch16_clip_224"]),
        "budgets": [5000], "seeds": PAPER_SEEDS, "outputs": ["label"], "victim_modes": ["lp"],
        "fixed": PAPER_CIFAR10,
    },
    "paper-cifar10-fft": {
        "victims": _authors(RESNETS + ["vit_small_patch16_224", "vit_base_patch16_224"]),
        "thieves": _authors(["resnet34", "resnet101", "vit_base_patch16_224", "vit_large_patch16_224",
                             "vit_base_patch16_clip_224"]),
        "budgets": [5000], "seeds": PAPER_SEEDS, "outputs": ["label"], "victim_modes": ["fft"],
        "fixed": {**PAPER_CIFAR10, "thief_mode": "fft"},
    },
    # What runs on this project's 2-core CPU machines: one 20k-query run per cell gives the curve.
    # No fixed image size: each backbone runs at its CPU size (96 px for the Lites, 32 px for the
    # scratch CNN, whose native size it is).
    "offline-cifar10": {
        "victims": LITES + ["scratch_cnn"],
        "thieves": LITES,
        "budgets": [20000], "seeds": [0, 1, 2], "outputs": ["label", "probs"], "victim_modes": ["auto"],
        "fixed": {"dataset": "cifar10", "data_dir": "../shared/data/cifar10-jpeg.tar.gz",
                  "preset": "fast", "thief_mode": "lp", "strategy": "random"},
    },
    # The confound of offline-cifar10 (pretrained LP victims at 96 px vs a scratch FFT victim at 32 px)
    # taken apart: one EfficientNet-Lite0 thief (LP) at 32 px against a Lite0 LP victim, a Lite0 FFT victim
    # and the scratch CNN FFT victim, all at 32 px. `image_size` applies to victim and thief alike, so the
    # three victims face the very same thief. Victim modes "auto" + "fft": scratch FFT once, Lite0 LP and FFT
    # (the slow cells, last).
    "confound-cifar10": {
        "victims": ["scratch_cnn", "tf_efficientnet_lite0"],
        "thieves": ["tf_efficientnet_lite0"],
        "budgets": [20000], "seeds": [0, 1, 2], "outputs": ["label"], "victim_modes": ["auto", "fft"],
        "fixed": {"dataset": "cifar10", "data_dir": "../shared/data/cifar10-jpeg.tar.gz", "image_size": 32,
                  "preset": "fast", "thief_mode": "lp", "strategy": "random"},
    },
    # The defender's side: each defence at two strengths inside the API of a pretrained (Lite0 LP) and a
    # scratch victim, stolen by one Lite0 LP thief with 5,000 queries, on label and probability answers
    # where the defence fits (`Grid.cells`). "none" is the undefended reference of every pair.
    "defences-cifar10": {
        "victims": ["tf_efficientnet_lite0", "scratch_cnn"],
        "thieves": ["tf_efficientnet_lite0"],
        "budgets": [5000], "seeds": [0, 1, 2], "outputs": ["label", "probs"], "victim_modes": ["auto"],
        "defences": ["none", "top1", "rounding:decimals=1",
                     "gaussian-noise:sigma=0.1", "gaussian-noise:sigma=0.3", "gaussian-noise:sigma=0.3,keep_argmax=true",
                     "reverse-sigmoid:beta=0.3", "reverse-sigmoid:beta=1.0",
                     "mad:epsilon=0.5", "mad:epsilon=1.0", "mad:epsilon=1.0,keep_argmax=true",
                     "mad-angular:epsilon=0.5", "mad-angular:epsilon=1.0", "mad-angular:epsilon=1.0,keep_argmax=true",
                     "adaptive-misinformation:tau=0.5", "adaptive-misinformation:tau=0.8",
                     "adaptive-misinformation-reversed:tau=0.5", "adaptive-misinformation-reversed:tau=0.8",
                     "watermark:rate=0.02", "watermark:rate=0.1",
                     "prada:delta=0.9,block=true", "prada:delta=0.95,block=true"],
        "fixed": {"dataset": "cifar10", "data_dir": "../shared/data/cifar10-jpeg.tar.gz",
                  "preset": "fast", "thief_mode": "lp", "strategy": "random", "evaluations": "fidelity"},
    },
    # What a stolen copy lets the thief do, per victim: every default evaluation (adversarial transfer against
    # its baselines, corruptions, fidelity) after a 5,000-label theft by one Lite0 LP thief, for the
    # offline grid's Lite0 LP victim (the thief's own public backbone) and its scratch victim.
    "consequences-cifar10": {
        "victims": ["tf_efficientnet_lite0", "scratch_cnn"],
        "thieves": ["tf_efficientnet_lite0"],
        "budgets": [5000], "seeds": [0, 1, 2], "outputs": ["label"], "victim_modes": ["auto"],
        "fixed": {"dataset": "cifar10", "data_dir": "../shared/data/cifar10-jpeg.tar.gz",
                  "preset": "fast", "thief_mode": "lp", "strategy": "random"},
    },
}
# The consequences grid's thefts, with adversarial transfer over an epsilon sweep (1, 2, 4, 8 /255) from the copy and
# from an independent model: where the attacks are not saturated, whether the copy transfers better.
_CONSEQUENCES = PRESETS["consequences-cifar10"]
PRESETS["transfer-sweep-cifar10"] = {**_CONSEQUENCES,
                                     "fixed": {**_CONSEQUENCES["fixed"], "evaluations": "transfer-sweep"}}
# The same thefts in the authors' transfer setting (`adversarial-fidelity`: FGSM 8/255 on the thief over 1,024 test
# images, scored as thief-victim agreement on the adversarial images), as their adversarial_attack_transfer.py does.
PRESETS["adversarial-fidelity-cifar10"] = {**_CONSEQUENCES,
                                           "fixed": {**_CONSEQUENCES["fixed"], "evaluations": "adversarial-fidelity"}}
