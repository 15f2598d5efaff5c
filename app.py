"""fmsteal's web app: pick a victim and a thief, press Start, watch the model being stolen.

This file only wires widgets to functions: jobs run in `fmsteal.service.jobs`, estimates come from
`fmsteal.experiment.estimate`, figures from `fmsteal.service.plots` and `fmsteal.service.results`.
`python app.py` serves on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

if os.environ.get("SPACES_ZERO_GPU") and importlib.util.find_spec("spaces"):
    import spaces  # noqa: F401  ZeroGPU patches CUDA initialisation: it must be imported before torch

import gradio as gr

from fmsteal.service import plots, results
from fmsteal.experiment.config import ExperimentConfig
from fmsteal.errors import FmstealError
from fmsteal.experiment.estimate import estimate
from fmsteal.service.jobs import TERMINAL, JobStore, status_line
from fmsteal.engine.zoo import get_backbone, list_backbones

REPO = Path(__file__).resolve().parent
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_DATA = os.environ.get("FMSTEAL_DATA_DIR", str(SHARED_CIFAR) if SHARED_CIFAR.exists() else "")
RUNS = Path(os.environ.get("FMSTEAL_RUNS", REPO / "runs"))
STORE = JobStore(RUNS)
LABELS = {spec.name: spec.label for spec in list_backbones()}
CSS = """
.gradio-container {width: 100% !important; max-width: 1480px !important; margin: auto}
#status {min-height: 2.6em; padding: 8px 14px; border-radius: 8px; border-left: 4px solid var(--color-accent);
          background: var(--block-background-fill)}
#estimate {font-size: 0.92em}
#summary {font-size: 1.05em}
"""


def make_config(victim, thief, budget, data_dir, dataset, query_pool, victim_mode, thief_mode, output,
                strategy, seed, device, image_size, train_per_class, test_per_class):
    """The page's inputs as an ExperimentConfig (raises ConfigError with a readable message)."""
    return ExperimentConfig(
        victim=victim, thief=thief, budget=int(budget or 0), dataset=dataset,
        data_dir=(data_dir or "").strip() or None, query_pool=(query_pool or "").strip() or "heldout",
        victim_mode=victim_mode, thief_mode=thief_mode, output=output, strategy=strategy, seed=int(seed or 0),
        device=device, image_size=int(image_size) if image_size else None,
        train_per_class=int(train_per_class) if train_per_class else None,
        test_per_class=int(test_per_class) if test_per_class else None)


def check(*inputs) -> tuple[object | None, dict | None, str]:
    """(config, estimate, markdown): config is None when the inputs are wrong or the run is refused."""
    try:
        config = make_config(*inputs)
        guess = estimate(config)
    except FmstealError as error:
        return None, None, f"**Cannot start:** {error}"
    if guess["refused"]:
        return None, guess, f"**Refused.** {guess['message']}"
    return config, guess, f"{guess['message']}"


def show_estimate(*inputs) -> str:
    """The estimate (or the reason not to start) shown above Start."""
    return check(*inputs)[2]


def start(*inputs):
    """Queue the job (or explain why not): job id, stored id, status, estimate, timer."""
    config, guess, note = check(*inputs)
    if config is None:
        return "", gr.skip(), note, note, gr.Timer(active=False)
    job_id = STORE.submit(config, estimate_s=guess["seconds"])
    return job_id, job_id, status_line(STORE.snapshot(job_id)), note, gr.Timer(active=True)


def cancel(job_id: str) -> str:
    STORE.cancel(job_id)
    return status_line(STORE.snapshot(job_id))


def poll(job_id: str, drawn: str):
    """Status line every tick; figures, summary and downloads only when a checkpoint or the card arrived.

    `drawn` names what the page shows (job, checkpoints, card), so progress ticks send no figures.
    """
    snap = STORE.snapshot(job_id)
    timer = gr.Timer(active=snap is not None and snap["status"] not in TERMINAL)
    if snap is None:  # no job yet, or Start was refused: leave its message in place
        return (*[gr.skip()] * 7, timer, drawn)
    card = snap["card"]
    showing = f"{job_id}:{len(snap['checkpoints'])}:{card is not None}"
    if showing == drawn:
        return (status_line(snap), *[gr.skip()] * 6, timer, drawn)
    victim_accuracy = card["victim_accuracy"] if card else None
    curve = plots.curve_figure(card["curve"] if card else snap["checkpoints"], victim_accuracy,
                               snap["config"]["budget"])
    csv = Path(snap["card_path"]).with_suffix(".csv") if card else None
    return (status_line(snap), curve, plots.confusion_figure(card), plots.per_class_figure(card),
            plots.summary_markdown(card, LABELS) if card else "",
            gr.DownloadButton(value=snap["card_path"], visible=bool(card)),
            gr.DownloadButton(value=str(csv) if csv else None, visible=bool(card)), timer, showing)


def reattach(stored: str | None):
    """On page load: show the job this browser started before, if the server still knows it."""
    job_id = stored if STORE.snapshot(stored) else ""
    return (job_id, *poll(job_id, ""))


def job_state(job_id: str) -> dict:
    """The job's state as JSON (for API clients): status, checkpoints, run card, ..."""
    return STORE.snapshot(job_id) or {"status": "unknown", "error": f"No job {job_id!r} on this server."}


def fix_mode(name: str) -> str:
    """A scratch network has nothing to probe: it is always trained whole."""
    return "fft" if get_backbone(name).family == "scratch" else gr.skip()


def steal_tab() -> tuple:
    """The job controls and live outputs; returns what the page-load events need."""
    choices = [(spec.describe(), spec.name) for spec in list_backbones()]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=420):
            victim = gr.Dropdown(choices, value="tf_efficientnet_lite0", label="Victim backbone", elem_id="victim",
                                 info="the model being stolen: backbone + a head trained on the dataset")
            thief = gr.Dropdown(choices, value="tf_efficientnet_lite0", label="Thief backbone", elem_id="thief",
                                info="the attacker's public pretrained model")
            budget = gr.Slider(0, 20000, value=2000, step=100, label="Query budget", elem_id="budget",
                               info="images the thief may send to the victim's API")
            estimate_box = gr.Markdown(elem_id="estimate")
            with gr.Row():
                start_button = gr.Button("Start", variant="primary", elem_id="start")
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Accordion("Advanced", open=False):
                data_dir = gr.Textbox(DEFAULT_DATA, label="Data folder or .tar.gz", elem_id="data-dir",
                                      info="train/<class>/*.jpg and test/<class>/*.jpg; empty = the dataset below")
                dataset = gr.Dropdown(["cifar10", "cifar100", "tiny-imagenet"], value="cifar10",
                                      label="Dataset (Hugging Face Hub)")
                query_pool = gr.Textbox("heldout", label="Query pool",
                                        info="'heldout' (half of the train split), cifar100, tiny-imagenet, "
                                             "imagenet32 (needs FMSTEAL_IMAGENET32) or a folder")
                with gr.Row():
                    victim_mode = gr.Radio(["lp", "fft"], value="lp", label="Victim training", elem_id="victim-mode",
                                           info="lp = linear probe, fft = full fine-tuning")
                    thief_mode = gr.Radio(["lp", "fft"], value="lp", label="Thief training", elem_id="thief-mode")
                output = gr.Radio(["label", "topk", "probs", "rounded"], value="label", label="Victim answers",
                                  info="top-1 label (paper), top-k labels, probabilities, rounded probabilities")
                strategy = gr.Radio(["random", "entropy", "kcenter"], value="random", label="Query selection")
                with gr.Row():
                    seed = gr.Number(0, precision=0, label="Seed", minimum=0, elem_id="seed")
                    device = gr.Radio(["auto", "cpu", "cuda"], value="auto", label="Device")
                with gr.Row():
                    image_size = gr.Number(0, precision=0, label="Image size (px, 0 = auto)", minimum=0, elem_id="image-size")
                    train_pc = gr.Number(0, precision=0, label="Train images/class (0 = all)", minimum=0)
                    test_pc = gr.Number(0, precision=0, label="Test images/class (0 = all)", minimum=0)
            inputs = [victim, thief, budget, data_dir, dataset, query_pool, victim_mode, thief_mode, output,
                      strategy, seed, device, image_size, train_pc, test_pc]
        with gr.Column(scale=3):
            status = gr.Markdown(status_line(None), elem_id="status")
            curve = gr.Plot(plots.curve_figure([], budget=2000), label="Agreement vs queries", elem_id="curve")
            with gr.Row():
                confusion = gr.Plot(plots.confusion_figure(None), label="Confusion", elem_id="confusion")
                per_class = gr.Plot(plots.per_class_figure(None), label="Per class", elem_id="per-class")
            summary = gr.Markdown(elem_id="summary")
            with gr.Row():
                card_file = gr.DownloadButton("Run card (JSON)", visible=False, size="md")
                curve_file = gr.DownloadButton("Curve (CSV)", visible=False, size="md")
    job_box = gr.Textbox(visible=False, label="job id")
    stored = gr.BrowserState("", storage_key="fmsteal_job")
    drawn = gr.State("")
    timer = gr.Timer(1.0, active=False)

    victim.change(fix_mode, victim, victim_mode, api_visibility="private")
    thief.change(fix_mode, thief, thief_mode, api_visibility="private")
    # Cheap, read-only handlers run concurrently: one visitor's poll never waits behind another's.
    for widget in inputs:
        widget.change(show_estimate, inputs, estimate_box, api_visibility="private", trigger_mode="always_last",
                      concurrency_limit=None)
    live = [status, curve, confusion, per_class, summary, card_file, curve_file, timer, drawn]
    start_button.click(start, inputs, [job_box, stored, status, estimate_box, timer], api_name="start").then(
        poll, [job_box, gr.State("")], live, api_name="first_poll", api_visibility="private", concurrency_limit=None,
        show_progress="hidden")
    cancel_button.click(cancel, job_box, status, api_name="cancel", concurrency_limit=None)
    timer.tick(poll, [job_box, drawn], live, api_name="poll", show_progress="hidden", concurrency_limit=None)
    gr.api(job_state, api_name="job", concurrency_limit=None)
    gr.api(show_estimate_api, api_name="estimate")
    return stored, job_box, live, inputs, estimate_box


def show_estimate_api(victim: str, thief: str, budget: int, data_dir: str) -> str:
    """The estimate shown before Start, for the main inputs (other options at their defaults)."""
    return show_estimate(victim, thief, budget, data_dir, "cifar10", "heldout", "lp", "lp", "label", "random",
                         0, "auto", 0, 0, 0)


def results_tab() -> None:
    table = results.load_tables()
    found = results.views(table)
    if not found["heatmaps"]:
        gr.Markdown("No precomputed results are installed (see `precomputed/`).")
        return
    heatmaps = found["heatmaps"]
    gr.Markdown("Precomputed agreement between every victim and thief: the paper's tables and the project's own "
                "measured grid. Rows: the victim's backbone; columns: the thief's.")
    heat_choice = gr.Dropdown([(_heatmap_label(v), i) for i, v in enumerate(heatmaps)],
                              value=heatmaps.index(found["default_heatmap"]), label="Table",
                              elem_id="results-table")
    figure, finding = results.heatmap_figure(table, **found["default_heatmap"])
    heat_plot = gr.Plot(figure, show_label=False, elem_id="results-heatmap")
    heat_note = gr.Markdown(f"**Finding.** {finding}", elem_id="results-finding")
    heat_choice.change(lambda i: _finding(results.heatmap_figure(table, **heatmaps[i])), heat_choice,
                       [heat_plot, heat_note], api_visibility="private")
    curves = found["curves"]
    if curves:
        curve_choice = gr.Dropdown([(_curve_label(v), i) for i, v in enumerate(curves)],
                                   value=curves.index(found["default_curve"]), label="Budget curve")
        figure, finding = results.budget_curve_figure(table, **_curve_args(found["default_curve"]))
        curve_plot = gr.Plot(figure, show_label=False, elem_id="results-curve")
        curve_note = gr.Markdown(f"**Finding.** {finding}")
        curve_choice.change(lambda i: _finding(results.budget_curve_figure(table, **_curve_args(curves[i]))),
                            curve_choice, [curve_plot, curve_note], api_visibility="private")


def _finding(figure_and_sentence: tuple) -> tuple:
    figure, sentence = figure_and_sentence
    return figure, f"**Finding.** {sentence}"


def _heatmap_label(view: dict) -> str:
    mode = {"lp": "LP victims", "fft": "FFT victims", "all": "LP and FFT victims"}.get(view["victim_mode"])
    return f"{view['source']} · {view['dataset']} · {mode} · {view['budget']:,} {view['output']} queries"


def _curve_label(view: dict) -> str:
    mode = {"lp": "LP victims", "fft": "FFT victims", "all": "LP and FFT victims"}.get(view["victim_mode"])
    return f"{LABELS.get(view['thief'], view['thief'])} thief · {view['dataset']} · {mode} · {view['output']}"


def _curve_args(view: dict) -> dict:
    return {k: view[k] for k in ("dataset", "victim_mode", "output", "thief")}


def build() -> gr.Blocks:
    with gr.Blocks(title="fmsteal: watch a model get stolen", fill_width=True) as demo:
        gr.Markdown("# fmsteal: watch a model get stolen\nA victim classifier answers queries; a thief "
                    "trains on nothing but those answers. How closely can it copy the victim?")
        with gr.Tabs():
            with gr.Tab("Steal a model", id="steal"):
                stored, job_box, live, inputs, estimate_box = steal_tab()
            with gr.Tab("Results", id="results"):
                results_tab()
            with gr.Tab("About", id="about"):
                gr.Markdown((REPO / "fmsteal" / "service" / "about.md").read_text())
        demo.load(reattach, stored, [job_box, *live], api_visibility="private")
        demo.load(show_estimate, inputs, estimate_box, api_visibility="private")
    return demo



demo = build()

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=None).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="orange"), css=CSS,
        allowed_paths=[str(RUNS)], footer_links=["api"])
