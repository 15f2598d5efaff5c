import math

import pytest
import torch

from fmsteal.evaluation.metrics import accuracy, agreement, confusion, macro_f1, per_class_agreement

THIEF = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1])
VICTIM = torch.tensor([0, 1, 2, 2, 2, 0, 0, 0])


def test_agreement_counts_matching_predictions():
    assert agreement(THIEF, VICTIM) == 5 / 8
    assert accuracy(VICTIM, VICTIM) == 1.0


def test_confusion_rows_are_the_first_argument():
    matrix = confusion(VICTIM, THIEF, 3)
    assert matrix.tolist() == [[2, 1, 1], [0, 1, 0], [0, 1, 2]]
    assert int(matrix.sum()) == len(THIEF)
    assert int(matrix.trace()) == 5


def test_per_class_agreement_is_conditioned_on_the_victims_class():
    assert per_class_agreement(THIEF, VICTIM, 4) == [0.5, 1.0, 2 / 3, None]


def test_macro_f1_matches_a_hand_computation():
    # class 0: tp 2, predicted 2, actual 4 -> 2*2/6; class 1: tp 1, pred 3, actual 1 -> 2/4; class 2: tp 2, pred 3, actual 3 -> 4/6
    expected = (4 / 6 + 2 / 4 + 4 / 6) / 3
    assert math.isclose(macro_f1(THIEF, VICTIM, 3), expected, rel_tol=1e-9)
    assert macro_f1(VICTIM, VICTIM, 5) == 1.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one length"):
        agreement(THIEF, VICTIM[:3])
