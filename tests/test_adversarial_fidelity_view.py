"""The authors' transfer setting as a grid: a table with the columns the adversarial-fidelity evaluation gives its
cells, read into a finding per victim, paired by seed (the measured grid is checked in test_readme_findings)."""

from __future__ import annotations

import pandas as pd

from fmsteal.evaluation.registry import EVALUATIONS
from fmsteal.service import adversarial_fidelity_results as view
from fmsteal.service.presets import PRESETS


def _cell(victim: str, mode: str, label: str, seed: int, agreement: float, fidelity: float) -> dict:
    """One cell's table row: its result through the evaluation's own `columns`."""
    result = {"adversarial_fidelity": fidelity, "victim_fooled": 0.5, "thief_fooled": 0.9, "n": 1024, "eps": 8 / 255,
              "attack": "fgsm"}
    return {"victim": victim, "victim_mode": mode, "victim_label": label, "thief": "tf_efficientnet_lite0",
            "thief_label": "EfficientNet-Lite0", "output": "label", "budget": 5000, "seed": seed,
            "agreement": agreement, **EVALUATIONS.get("adversarial-fidelity").meta["columns"](result)}


def test_the_finding_sets_adversarial_agreement_beside_clean_agreement_per_victim():
    cells = pd.DataFrame([_cell("tf_efficientnet_lite0", "lp", "EfficientNet-Lite0", seed, 0.84, 0.60 + 0.01 * seed)
                          for seed in range(3)] + [_cell("scratch_cnn", "fft", "Scratch CNN", 0, 0.70, 0.75)])
    finding = view.fidelity_finding(cells)
    assert finding.startswith("The authors' setting (FGSM at 8/255 crafted on the thief, 1,024 test images): ")
    lite0, scratch = finding.split("; Scratch CNN")
    assert "agree on 61.0% ± 1.0 (n=3) of the adversarial images against 84.0% ± 0.0 (n=3)" in lite0
    assert "(-23.0 ± 1.0 points paired by seed, 3 seeds); the victim gets 50.0% ± 0.0 of" in lite0
    assert "(from scratch): thief and victim agree on 75.0% (n=1)" in scratch and "(+5.0 points paired" in scratch
    assert view.fidelity_finding(pd.DataFrame()) == "No precomputed adversarial-fidelity results."


def test_the_preset_is_the_consequences_thefts_in_the_authors_setting():
    consequences, authors = PRESETS["consequences-cifar10"], PRESETS["adversarial-fidelity-cifar10"]
    assert {**authors, "fixed": None} == {**consequences, "fixed": None}
    assert authors["fixed"] == {**consequences["fixed"], "evaluations": "adversarial-fidelity"}
