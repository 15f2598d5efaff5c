"""The `examples` evaluation: a few test images where the thief agrees and disagrees with the victim.

Each example carries the image (a small PNG, base64), the true class, the victim's and the thief's
answers, so a run card alone can show them (the app's gallery, a shared link).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Generator

from fmsteal.evaluation.registry import EVALUATIONS, EvaluationContext
from fmsteal.fields import Field

__all__ = ["examples", "png_base64"]


def png_base64(image) -> str:
    """A uint8 3 x H x W tensor as a base64 PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@EVALUATIONS.register("examples", help="a few test images where thief and victim agree and disagree",
                      params=(Field("per_side", "int", 6, "images shown where they agree, and where they disagree",
                                    minimum=0, maximum=50),),
                      default_on=True, cost=lambda pricing, params: 0.01)
def examples(context: EvaluationContext, params: dict) -> Generator[dict, None, list[dict]]:
    import torch

    names = context.test.class_names
    agree = context.thief_test == context.victim_test
    generator = torch.Generator().manual_seed(context.seed)
    chosen = []
    for side in (agree, ~agree):
        candidates = torch.nonzero(side).flatten()
        order = candidates[torch.randperm(len(candidates), generator=generator)][:params["per_side"]]
        chosen += sorted(order.tolist())
    yield from ()
    return [{"image_png": png_base64(context.test.images[i]), "true": names[int(context.test.labels[i])],
             "victim": names[int(context.victim_test[i])], "thief": names[int(context.thief_test[i])],
             "agree": bool(agree[i])} for i in chosen]
