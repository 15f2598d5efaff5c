"""'What the thief can do now': a run card's transfer rates and corruption results as a figure and a table."""

from __future__ import annotations

import base64
import io

import plotly.graph_objects as go

from fmsteal.service.plots import placeholder

__all__ = ["transfer_figure", "example_items", "corruption_table"]

BARS = (("thief_pgd", "PGD on the stolen copy"), ("thief_fgsm", "FGSM on the stolen copy"),
        ("independent_pgd", "PGD on an independent model<br>(true labels, no queries)"),
        ("independent_fgsm", "FGSM on an independent model"), ("noise", "random noise of the same size<br>(floor)"),
        ("victim_whitebox_pgd", "PGD on the victim itself<br>(defender's view, ceiling)"))


def transfer_figure(card: dict | None) -> go.Figure:
    """Bars: the share of correctly classified test images the victim gets wrong after each attack."""
    figure = go.Figure(layout={"template": "plotly_white", "height": 320,
                               "margin": {"l": 20, "r": 20, "t": 90, "b": 40}})
    transfer = (card or {}).get("transfer")
    if not transfer:
        return placeholder(figure, "Adversarial transfer appears here<br>at the end of a run.", height=320)
    shown = [(label, transfer[key]) for key, label in BARS if transfer.get(key) is not None]
    colours = ["#C53030", "#C53030", "#718096", "#718096", "#A0AEC0", "#2D3748"][:len(shown)]
    figure.add_trace(go.Bar(x=[100 * v for _, v in shown], y=[label for label, _ in shown], orientation="h",
                            marker_color=colours,
                            text=[f"{100 * v:.0f}%" for _, v in shown], textposition="auto"))
    figure.update_layout(title=f"Victim fooled by adversarial images<br><sup>L∞ ε = {255 * transfer['eps']:.0f}/255, "
                               f"{transfer['steps']} PGD steps,<br>n = {transfer['n']} images it classified correctly</sup>",
                         xaxis={"title": "victim wrong (%)", "range": [0, 100]}, yaxis={"autorange": "reversed"})
    return figure


def example_items(card: dict | None) -> list[tuple]:
    """(image, caption) pairs of the card's transfer examples: each clean image, then its adversarial twin."""
    from PIL import Image

    def image(uri: str):
        return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))

    items = []
    for example in ((card or {}).get("transfer") or {}).get("examples") or []:
        verdict = "FOOLED" if example["fooled"] else "not fooled"
        items += [(image(example["clean_png"]), f"clean: victim says {example['victim_before']}"),
                  (image(example["adversarial_png"]), f"adversarial: victim says {example['victim_after']} ({verdict})")]
    return items


def corruption_table(card: dict | None) -> list[list]:
    """Rows: corruption, severity, victim accuracy, thief accuracy, agreement (percent)."""
    return [[row["name"].replace("_", " "), row["severity"], round(100 * row["victim_accuracy"], 1),
             round(100 * row["thief_accuracy"], 1), round(100 * row["agreement"], 1)]
            for row in (card or {}).get("corruptions") or []]
