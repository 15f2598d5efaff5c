"""Run figures and the summary: they show exactly the numbers of the events and the card."""

from __future__ import annotations

from fmsteal.service.plots import confusion_figure, curve_figure, per_class_figure, summary_markdown


def make_card() -> dict:
    matrix = [[8, 2, 0], [1, 6, 3], [0, 0, 10]]
    agree = [8 / 10, 6 / 10, 10 / 10]
    return {
        "config": {"victim": "vit_large_patch16_224", "thief": "tf_efficientnet_lite0", "victim_mode": "lp",
                   "thief_mode": "lp", "output": "topk", "top_k": 3, "decimals": 2, "dataset": "cifar10",
                   "query_pool": "heldout", "strategy": "kcenter", "preset": "fast", "seed": 2},
        "image_size": {"victim": 112, "thief": 96},
        "class_names": ["cat", "dog", "ship"], "confusion": {"labels": ["cat", "dog", "ship"], "matrix": matrix},
        "per_class_agreement": agree, "agreement": 24 / 30, "victim_accuracy": 0.9, "thief_accuracy": 0.7,
        "queries_spent": 1500, "test_size": 30, "device": "cpu", "timings": {"total": 42.4},
        "curve": [],
    }


def test_curve_has_agreement_accuracy_and_the_victim_line():
    points = [{"queries": q, "agreement": a, "thief_accuracy": a - 0.1, "victim_accuracy": 0.8}
              for q, a in ((20, 0.3), (50, 0.5), (100, 0.6))]
    figure = curve_figure(points, budget=100)
    agreement, accuracy = figure.data
    assert list(agreement.x) == [20, 50, 100] and list(agreement.y) == [30.0, 50.0, 60.0]
    assert [round(y, 6) for y in accuracy.y] == [20.0, 40.0, 50.0]
    line = figure.layout.shapes[0]
    assert line.y0 == line.y1 == 80.0
    assert figure.layout.xaxis.type == "log" and list(figure.layout.xaxis.tickvals) == [20, 50, 100]


def test_dense_checkpoints_get_ticks_that_do_not_collide():
    figure = curve_figure([{"queries": q, "agreement": 0.5, "thief_accuracy": 0.4} for q in (20, 30, 50, 70, 100, 120)])
    assert list(figure.layout.xaxis.tickvals) == [20, 30, 50, 70, 120]  # 100 beside 120 would overlap; the budget stays


def test_empty_curve_explains_itself():
    figure = curve_figure([])
    assert all(len(trace.x) == 0 for trace in figure.data) and not figure.layout.shapes
    assert "curve grows" in figure.layout.annotations[0].text


def test_confusion_heatmap_has_class_names_counts_and_row_shares():
    figure = confusion_figure(make_card())
    heatmap = figure.data[0]
    assert list(heatmap.x) == list(heatmap.y) == ["cat", "dog", "ship"]
    assert [list(row) for row in heatmap.text] == make_card()["confusion"]["matrix"]
    assert [round(v) for v in heatmap.z[1]] == [10, 60, 30]
    assert figure.layout.yaxis.title.text == "victim predicts" and figure.layout.xaxis.title.text == "thief predicts"


def test_per_class_bars_and_overall_line():
    figure = per_class_figure(make_card())
    bars = figure.data[0]
    assert list(bars.y) == ["cat", "dog", "ship"] and list(bars.x) == [80.0, 60.0, 100.0]
    assert figure.layout.shapes[0].x0 == 80.0


def test_placeholders_before_the_card():
    from fmsteal.service.classroom import comparison_figure
    from fmsteal.service.consequences import transfer_figure

    for figure in (confusion_figure(None), per_class_figure(None), transfer_figure(None), comparison_figure([], {})):
        assert not figure.data and "appear" in figure.layout.annotations[0].text  # a message, not empty axes
        assert figure.layout.xaxis.visible is False and figure.layout.yaxis.visible is False


def test_summary_in_plain_words():
    text = summary_markdown(make_card(), {"vit_large_patch16_224": "ViT-L/16", "tf_efficientnet_lite0": "Lite0"})
    assert "80.0% of the test images" in text and "24 of 30 test images" in text
    assert "Lite0 thief" in text and "ViT-L/16 victim" in text and "top-3 labels" in text and "1,500 queries" in text
    assert "best on *ship* (100%)" in text and "worst on *dog* (60%)" in text
    assert "90.0%" in text and "70.0%" in text and "42 s" in text


def test_summary_says_what_the_run_measured():
    text = summary_markdown(make_card())
    conditions = text.split("*Measured under:*")[1]
    for field in ("CIFAR-10", "one run (seed 2, no spread)", "victim 112 px, thief 96 px",
                  "query pool: held-out half of the CIFAR-10 train split", "k-center selection", "fast preset"):
        assert field in conditions, field
    card = make_card()
    card["config"].update(query_pool="imagenet32", preset="paper", seed=1)
    assert "ImageNet32" in summary_markdown(card) and "paper preset" in summary_markdown(card)


def test_summary_of_a_victim_that_never_predicts_some_class():
    card = make_card()
    card["per_class_agreement"] = [None if i == 0 else value for i, value in enumerate(card["per_class_agreement"])]
    text = summary_markdown(card, {})
    assert "worst on" in text and f"*{card['class_names'][0]}*" not in text
    assert per_class_figure(card).data[0].text[0] == "never predicted"
