"""fmsteal's web app: pick a victim and a thief, press Start, watch the model being stolen.

This file only wires widgets to functions: the form comes from the experiment's declared fields
(`fmsteal.service.form`), jobs run in `fmsteal.service.jobs`, estimates come from
`fmsteal.experiment.estimate`, figures from `fmsteal.service.plots` and `fmsteal.service.results`.
Importing it builds nothing; `python app.py` builds the page and serves it on
GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 127.0.0.1:7860).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

if os.environ.get("SPACES_ZERO_GPU") and importlib.util.find_spec("spaces"):
    import spaces  # noqa: F401  ZeroGPU patches CUDA initialisation: it must be imported before torch

import gradio as gr

from fmsteal import settings
from fmsteal.errors import FmstealError
from fmsteal.experiment.config import FIELDS, ExperimentConfig
from fmsteal.experiment.estimate import estimate
from fmsteal.service import classroom, plots, results, sharing
from fmsteal.service.form import Form, api_function
from fmsteal.service.jobs import TERMINAL, JobStore, status_line

REPO = Path(__file__).resolve().parent
CSS = """
.gradio-container {width: 100% !important; max-width: 1480px !important; margin: auto}
#status {min-height: 2.6em; padding: 8px 14px; border-radius: 8px; border-left: 4px solid var(--color-accent);
          background: var(--block-background-fill)}
#estimate {font-size: 0.92em}
#summary {font-size: 1.05em}
body.presenter, body.presenter .gradio-container {--text-xs: 15px; --text-sm: 18px; --text-md: 22px; --text-lg: 26px;
  --text-xl: 30px; --text-xxl: 36px; --body-text-color: #000; --block-label-text-color: #000; --block-info-text-color: #111}
body.presenter #status {font-size: 1.6em; border-left-width: 8px; background: #fff; color: #000}
body.presenter #advanced, body.presenter #estimate, body.presenter #shown {display: none}
"""
START_BUDGET = 2000  # the page opens on a budget that runs in seconds on a warm cache
_store: JobStore | None = None


def store() -> JobStore:
    """The job store, made when the page is built (importing app.py starts no worker)."""
    global _store
    if _store is None:
        _store = JobStore(settings.current().runs)
    return _store


def labels() -> dict[str, str]:
    from fmsteal.engine.zoo import list_backbones

    return {spec.name: spec.label for spec in list_backbones()}


def check(values: dict) -> tuple[object | None, dict | None, str]:
    """(config, estimate, markdown) for the form's values: config is None when they are wrong or the run is refused."""
    try:
        config = ExperimentConfig.from_inputs(values)
        guess = estimate(config)
    except FmstealError as error:
        return None, None, f"**Cannot start:** {error}"
    if guess["refused"]:
        return None, guess, f"**Refused.** {guess['message']}"
    return config, guess, f"{guess['message']}"


def submit(values: dict) -> tuple[str, str, str]:
    """Queue the job (or explain why not): (job id or "", status line, estimate note)."""
    config, guess, note = check(values)
    if config is None:
        return "", note, note
    job_id = store().submit(config, estimate_s=guess["seconds"])
    return job_id, status_line(store().snapshot(job_id)), note


def cancel(job_id: str) -> str:
    store().cancel(job_id)
    return status_line(store().snapshot(job_id))


def current_job(session: list[str]) -> str:
    """The job the status line follows: the first of the session's jobs still queued or running, else the last."""
    snaps = [(job_id, store().snapshot(job_id)) for job_id in session]
    active = [job_id for job_id, snap in snaps if snap and snap["status"] not in TERMINAL]
    known = [job_id for job_id, snap in snaps if snap]
    return (active or known or [""])[0 if active else -1]


def session_runs(session: list[str]) -> list[dict]:
    """The session's runs as the comparison plot draws them: id, config, curve points."""
    runs = []
    for job_id in session:
        snap = store().snapshot(job_id)
        if snap and (snap["card"] or snap["checkpoints"]):
            runs.append({"id": job_id, "config": snap["config"],
                         "points": snap["card"]["curve"] if snap["card"] else snap["checkpoints"]})
    return runs


def run_outputs(card: dict | None, checkpoints: list[dict], budget: int) -> tuple:
    """Curve, confusion, per-class, summary and gallery of one run (a live job's or a shared card's)."""
    victim_accuracy = card["victim_accuracy"] if card else None
    curve = plots.curve_figure(card["curve"] if card else checkpoints, victim_accuracy, budget)
    return (curve, plots.confusion_figure(card), plots.per_class_figure(card),
            plots.summary_markdown(card, labels()) if card else "", gallery_items(card))


def gallery_items(card: dict | None) -> list[tuple]:
    """(image, caption) pairs of the card's agree/disagree examples."""
    import base64
    import io

    from PIL import Image

    items = []
    for example in (card or {}).get("examples") or []:
        image = Image.open(io.BytesIO(base64.b64decode(example["image_png"])))
        mark = "agree" if example["agree"] else "DISAGREE"
        items.append((image, f"{mark}: victim {example['victim']}, thief {example['thief']} (true {example['true']})"))
    return items


def poll(session: list[str], drawn: str, shown: list[str] | None):
    """Status every tick; figures, comparison, gallery and downloads only when something new arrived.

    `drawn` names what the page shows (jobs, checkpoints, cards), so progress ticks send no figures.
    """
    session = session or []
    job_id = current_job(session)
    snap = store().snapshot(job_id)
    snaps = [store().snapshot(j) for j in session]
    timer = gr.Timer(active=any(s and s["status"] not in TERMINAL for s in snaps))
    if snap is None:  # no job yet, or Start was refused: leave its message in place
        return (job_id, *[gr.skip()] * 11, timer, drawn)
    card = snap["card"]
    showing = "|".join(f"{j}:{len(s['checkpoints'])}:{s['card'] is not None}" for j, s in zip(session, snaps) if s)
    showing += f"|{job_id}|{sorted(shown or [])}"
    if showing == drawn:
        return (job_id, status_line(snap), *[gr.skip()] * 10, timer, drawn)
    runs = session_runs(session)
    choices = [(classroom.run_label(r["config"], labels()), r["id"]) for r in runs]
    visible = [r["id"] for r in runs] if shown is None else [r for r in shown if r in dict(map(reversed, choices))]
    visible = list(dict.fromkeys(visible + [r["id"] for r in runs if r["id"] not in drawn]))  # new runs show
    hidden = frozenset(r["id"] for r in runs) - set(visible)
    comparison = classroom.comparison_figure(runs, labels(), results_table(), hidden)
    csv = Path(snap["card_path"]).with_suffix(".csv") if card else None
    curve, confusion, per_class, summary, gallery = run_outputs(card, snap["checkpoints"], snap["config"]["budget"])
    return (job_id, status_line(snap), curve, confusion, per_class, summary,
            gr.DownloadButton(value=snap["card_path"], visible=bool(card)),
            gr.DownloadButton(value=str(csv) if csv else None, visible=bool(card)),
            comparison, gr.CheckboxGroup(choices=choices, value=visible), gallery,
            gr.Button(visible=bool(card)), timer, showing)


def reattach(session: list[str] | None, request: gr.Request):
    """On page load: a shared run (`?run=TOKEN`) if the link has one, else this browser's earlier jobs."""
    card = sharing.shared(request.query_params.get("run"), shared_folder()) if request else None
    if card:
        curve, confusion, per_class, summary, gallery = run_outputs(card, [], card["config"]["budget"])
        status = f"**Shared run** · {classroom.run_label(card['config'], labels())}"
        return (gr.skip(), "", status, curve, confusion, per_class, summary, gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                gallery, gr.skip(), gr.Timer(active=False), "shared")
    session = [j for j in (session or []) if store().snapshot(j)]
    return (session, *poll(session, "", None))


def shared_folder() -> Path:
    return settings.current().runs / "shared"


def share_link(job_id: str, request: gr.Request) -> str:
    """A link that reopens the current run's results (and nothing else) in any browser."""
    snap = store().snapshot(job_id)
    if not snap or not snap["card"]:
        return "Share works once the run is done."
    token = sharing.share(snap["card"], shared_folder())
    base = str(request.request.base_url) if request and request.request else "/"
    return f"Share this run: [{base}?run={token}]({base}?run={token})"


_table = None


def results_table():
    """The precomputed results table (loaded once, on first use)."""
    global _table
    if _table is None:
        _table = results.load_tables()
    return _table


def job_state(job_id: str) -> dict:
    """The job's state as JSON (for API clients): status, checkpoints, run card, ..."""
    return store().snapshot(job_id) or {"status": "unknown", "error": f"No job {job_id!r} on this server."}


def estimate_text(**values) -> str:
    """The estimate shown before Start (or the reason not to start), for the given options."""
    return check(values)[2]


def start_job(**values) -> dict:
    """Queue an experiment; {"job_id", "status", "message"} (job_id "" when refused)."""
    job_id, status, note = submit(values)
    return {"job_id": job_id, "status": status, "message": note}


def budget_slider(field, value) -> gr.Slider:
    return gr.Slider(0, 20000, value=value, step=100, label=field.title, info=field.help, elem_id="budget")


def steal_tab() -> tuple:
    """The job controls, live outputs and the classroom tools; returns what the page-load events need."""
    form = Form(FIELDS, {"budget": START_BUDGET, "data_dir": settings.current().data_dir or None},
                widgets={"budget": budget_slider})
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=420):
            form.render(advanced=False)
            estimate_box = gr.Markdown(elem_id="estimate")
            with gr.Row():
                start_button = gr.Button("Start", variant="primary", elem_id="start")
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Group(elem_id="scenarios"):
                gr.Markdown("**One-press scenarios** (queue the runs they need; a warm cache answers in seconds)")
                scenario_buttons = {entry.name: gr.Button(entry.help, size="sm", elem_id=f"scenario-{entry.name}")
                                    for entry in classroom.SCENARIOS}
                look_for = gr.Markdown(elem_id="look-for")
            presenter = gr.Checkbox(False, label="Presenter mode (large type, high contrast, fewer controls)",
                                    elem_id="presenter")
            with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                form.render(advanced=True)
        with gr.Column(scale=3):
            status = gr.Markdown(status_line(None), elem_id="status")
            curve = gr.Plot(plots.curve_figure([], budget=START_BUDGET), label="Agreement vs queries", elem_id="curve")
            with gr.Row():
                confusion = gr.Plot(plots.confusion_figure(None), label="Confusion", elem_id="confusion")
                per_class = gr.Plot(plots.per_class_figure(None), label="Per class", elem_id="per-class")
            summary = gr.Markdown(elem_id="summary")
            with gr.Row():
                card_file = gr.DownloadButton("Run card (JSON)", visible=False, size="md")
                curve_file = gr.DownloadButton("Curve (CSV)", visible=False, size="md")
                share_button = gr.Button("Share", visible=False, size="md", elem_id="share")
            share_box = gr.Markdown(elem_id="share-link")
            comparison = gr.Plot(classroom.comparison_figure([], {}), label="This session's runs", elem_id="comparison")
            with gr.Row():
                shown = gr.CheckboxGroup([], label="Show", elem_id="shown", scale=4)
                clear_button = gr.Button("Clear finished runs", size="sm", elem_id="clear", scale=1)
            gallery = gr.Gallery(label="Where the thief agrees and disagrees with the victim", columns=6, height=260,
                                 elem_id="gallery")
    job_box = gr.Textbox(visible=False, label="job id")
    session = gr.BrowserState([], storage_key="fmsteal_session")
    drawn = gr.State("")
    timer = gr.Timer(1.0, active=False)

    def show_estimate(data: dict) -> str:
        return check(form.values(data))[2]

    def press_start(data: dict):
        job_id, status_text, note = submit(form.values(data))
        if not job_id:
            return gr.skip(), note, note, gr.Timer(active=False)
        return (data[session] or []) + [job_id], status_text, note, gr.Timer(active=True)

    def scenario(name: str):
        entry = classroom.SCENARIOS.get(name)

        def queue_runs(data: dict):
            queued, notes = [], []
            for run in entry.fn(form.values(data)):
                job_id, _, note = submit(run["values"])
                (queued if job_id else notes).append(job_id or note)
            text = f"**{entry.help}.** Look for: {entry.meta['look_for']}" + "".join(f"\n\n{n}" for n in notes)
            return (data[session] or []) + queued, text, gr.Timer(active=bool(queued))

        return queue_runs

    # Cheap, read-only handlers run concurrently: one visitor's poll never waits behind another's.
    for widget in form.widgets.values():
        widget.change(show_estimate, form.inputs, estimate_box, api_visibility="private", trigger_mode="always_last",
                      concurrency_limit=None)
    live = [job_box, status, curve, confusion, per_class, summary, card_file, curve_file, comparison, shown, gallery,
            share_button, timer, drawn]
    def redraw(session_ids: list[str], shown_ids: list[str] | None):
        return poll(session_ids, "", shown_ids)

    refresh = (redraw, [session, shown], live)
    start_button.click(press_start, form.inputs | {session}, [session, status, estimate_box, timer],
                       api_visibility="private").then(*refresh, api_visibility="private", concurrency_limit=None,
                                                      show_progress="hidden")
    for name, button in scenario_buttons.items():
        button.click(scenario(name), form.inputs | {session}, [session, look_for, timer],
                     api_visibility="private").then(*refresh, api_visibility="private", concurrency_limit=None,
                                                    show_progress="hidden")
    cancel_button.click(cancel, job_box, status, api_name="cancel", concurrency_limit=None)
    timer.tick(poll, [session, drawn, shown], live, api_name="poll", show_progress="hidden", concurrency_limit=None)
    shown.input(*refresh, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    clear_button.click(lambda s: [j for j in s or [] if (store().snapshot(j) or {}).get("status") not in TERMINAL],
                       session, session, api_visibility="private").then(*refresh, api_visibility="private")
    share_button.click(share_link, job_box, share_box, api_visibility="private")
    presenter.change(None, presenter, None, js="(on) => { document.body.classList.toggle('presenter', on); return []; }")
    gr.api(job_state, api_name="job", concurrency_limit=None)
    gr.api(api_function(FIELDS, start_job, "start", start_job.__doc__), api_name="start")
    gr.api(api_function(FIELDS, estimate_text, "estimate", estimate_text.__doc__), api_name="estimate",
           concurrency_limit=None)
    page_load = [(show_estimate, form.inputs, estimate_box), (reattach, session, [session, *live])]
    return page_load


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
    return f"{labels().get(view['thief'], view['thief'])} thief · {view['dataset']} · {mode} · {view['output']}"


def _curve_args(view: dict) -> dict:
    return {k: view[k] for k in ("dataset", "victim_mode", "output", "thief")}


def build() -> gr.Blocks:
    with gr.Blocks(title="fmsteal: watch a model get stolen", fill_width=True) as demo:
        gr.Markdown("# fmsteal: watch a model get stolen\nA victim classifier answers queries; a thief "
                    "trains on nothing but those answers. How closely can it copy the victim?")
        with gr.Tabs():
            with gr.Tab("Steal a model", id="steal"):
                page_load = steal_tab()
            with gr.Tab("Results", id="results"):
                results_tab()
            with gr.Tab("About", id="about"):
                gr.Markdown((REPO / "fmsteal" / "service" / "about.md").read_text())
        for handler, inputs, outputs in page_load:
            demo.load(handler, inputs, outputs, api_visibility="private")
    return demo




def main() -> None:
    build().queue(default_concurrency_limit=None).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="orange"), css=CSS,
        allowed_paths=[str(settings.current().runs)], footer_links=["api"])


if __name__ == "__main__":
    main()
