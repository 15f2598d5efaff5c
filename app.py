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
import shutil
import tempfile
from pathlib import Path

if os.environ.get("SPACES_ZERO_GPU") and importlib.util.find_spec("spaces"):
    import spaces  # noqa: F401  ZeroGPU patches CUDA initialisation: it must be imported before torch

import gradio as gr
from gradio.utils import get_upload_folder

from fmsteal import settings
from fmsteal.engine.cache import remove_stale_temporaries
from fmsteal.engine.pack import install_in_background
from fmsteal.errors import FmstealError
from fmsteal.experiment.cards import evaluation_findings
from fmsteal.experiment.config import FIELDS, ExperimentConfig
from fmsteal.experiment.estimate import duration, estimate
from fmsteal.service import (adversarial_fidelity_results, classroom, consequence_results, consequences,
                             defence_results, live, plots, results, sharing, transfer_sweep_results, uploads)
from fmsteal.service.conditions import output_name
from fmsteal.service.form import Form, api_function
from fmsteal.service.job_files import browser_secret
from fmsteal.service.jobs import TERMINAL, JobStore, new_owner_token, status_line

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
body.presenter .gradio-container button:not([role=tab]) {font-size: var(--text-lg) !important; min-height: 2.4em}
#run-plots {flex-wrap: wrap}
#run-plots > * {min-width: min(440px, 100%) !important}
#gallery .grid-container, #transfer-examples .grid-container {
  grid-template-columns: repeat(auto-fill, minmax(100px, 1fr)) !important}
#gallery .thumbnail-item, #transfer-examples .thumbnail-item {aspect-ratio: auto; display: flex; flex-direction: column}
#gallery .thumbnail-item img, #transfer-examples .thumbnail-item img {aspect-ratio: 1; height: auto}
#gallery .caption-label, #transfer-examples .caption-label {position: static; white-space: normal; max-width: none;
  border: none; font-size: 12px; line-height: 1.25}
"""
# too much to read at 390 px
WIDE_PLOTS = ("#results-heatmap", "#results-curve", "#defence-plot", "#transfer-plot", "#transfer-sweep-plot")
HEAD = ("<style>@media (max-width: 767px) {body.shared #run-view {order: -1} "  # Gradio mangles @media body rules
        + ", ".join(WIDE_PLOTS) + " {overflow-x: auto} "
        + ", ".join(f"{plot} .js-plotly-plot" for plot in WIDE_PLOTS) + " {min-width: 760px} "
        + ", ".join(f"body.presenter {plot} .js-plotly-plot" for plot in WIDE_PLOTS) + " {min-width: 1140px}}</style>")
# On load: a shared run's page puts the result first on a phone (HEAD); window.fmstealPresenter(on) sets
# presenter mode and redraws every plot with larger fonts, including plots drawn later (Gradio draws with Plotly.react).
JS = """() => {
  if (new URLSearchParams(location.search).has('run')) document.body.classList.add('shared');
  // a plot drawn or restyled while its tab was hidden keeps a stale width: fit the shown ones to their boxes
  document.addEventListener('click', (event) => {
    if (!event.target.closest('[role=tab]') || !window.Plotly) return;
    setTimeout(() => document.querySelectorAll('.js-plotly-plot').forEach((gd) => {
      if (gd.offsetParent) window.Plotly.Plots.resize(gd);
    }), 100);
  });
  const SCALE = 1.5;
  const scaled = (font) => font && font.size ? {...font, size: Math.round(SCALE * font.size)} : font;
  const presented = ({data, layout, height}) => {
    const on = document.body.classList.contains('presenter');
    const big = {...structuredClone(layout), height: Math.round((on ? SCALE : 1) * height)};
    if (!on) return [data, big];
    big.font = {...big.font, size: Math.round(SCALE * (big.font?.size || 12))};
    if (big.title) {
      big.title = {...big.title, font: scaled(big.title.font), pad: {...big.title.pad, t: 2 * (big.title.pad?.t || 0)}};
    }
    if (big.margin?.t) big.margin = {...big.margin, t: Math.round(SCALE * big.margin.t)};
    if (big.legend?.y < 0) big.legend = {...big.legend, y: SCALE * big.legend.y};
    (big.annotations || []).forEach((a) => { a.font = scaled(a.font); });
    Object.keys(big).filter((k) => /^[xy]axis[0-9]*$/.test(k)).forEach((k) => { big[k].automargin = true; });
    return [data.map((t) => t.type === 'heatmap' ? {...t, textfont: {...t.textfont, size: big.font.size}} : t), big];
  };
  window.fmstealPresenter = (on) => {
    document.body.classList.toggle('presenter', on);
    const plotly = window.Plotly;
    if (!plotly) return;
    if (!plotly.fmstealReact) {  // Plotly drops layout.height once drawn: keep the figure's own
      plotly.fmstealReact = plotly.react;
      plotly.react = (gd, data, layout, config) => {
        const height = layout.height || gd.fmsteal?.height || gd._fullLayout?.height || 450;
        gd.fmsteal = {data, layout, config, height};
        return plotly.fmstealReact(gd, ...presented(gd.fmsteal), config);
      };
    }
    document.querySelectorAll('.js-plotly-plot').forEach((gd) => {
      const drawn = gd.fmsteal || {data: gd.data, layout: gd.layout, config: {responsive: true}};
      plotly.react(gd, drawn.data, drawn.layout, drawn.config);
    });
  };
}"""
START_BUDGET = 2000  # the page opens on a budget that runs in seconds on a warm cache
NAMED_POOLS = ("heldout", "cifar10", "cifar100", "tiny-imagenet", "imagenet32")
PUBLIC_MAX_BUDGET = 20_000  # a visitor's run on a shared public Space spends at most this many queries
CPU_SPACE_NOTE = ("This Space runs on a CPU: live runs use the offline backbones (EfficientNet-Lite0/1/2, the scratch "
                  "CNN) at small sizes and budgets; the full-size grids, ViT-L/16 included, are in **Results**.")
_store: JobStore | None = None
_table = None
_served: Path | None = None  # a temporary folder of copies of run files for downloads


def store() -> JobStore:
    """The job store, made on first use (importing app.py starts no worker)."""
    global _store
    if _store is None:
        _store = JobStore(settings.current().runs)
    return _store


def served_copies(files: tuple[Path, Path] | None, job_id: str) -> list[str | None]:
    """Copies of a run's card and curve for Gradio to hand out (it moves them into its cache under a hash of
    their content). The runs folder itself is never served, so no URL reaches another visitor's run or the
    share index."""
    global _served
    if not files:
        return [None, None]
    if _served is None:
        _served = Path(tempfile.mkdtemp(prefix="fmsteal-downloads-"))
    folder = _served / job_id
    folder.mkdir(exist_ok=True)
    return [str(shutil.copyfile(path, folder / path.name)) for path in files]


def results_table():
    """The precomputed results table (loaded once, on first use)."""
    global _table
    if _table is None:
        _table = results.load_tables()
    return _table


def labels() -> dict[str, str]:
    from fmsteal.engine.zoo import list_backbones

    return {spec.name: spec.label for spec in list_backbones()}


def page_fields() -> tuple:
    """The fields this server offers: in public mode no server paths (uploads instead)."""
    return tuple(f for f in FIELDS if f.public or not settings.current().public)


def check(values: dict, upload: str | None = None) -> tuple[object | None, dict | None, str]:
    """(config, estimate, markdown) for a visitor's values: config is None when they are wrong or the run is refused.

    In public mode a visitor names no server path: the data is a hub dataset or their own upload."""
    values = dict(values)
    if settings.current().public:
        if values.get("data_dir") or values.get("query_pool", "heldout") not in NAMED_POOLS:
            return None, None, ("**Cannot start:** this public Space reads no server folders: upload a .zip or .tar.gz "
                                "of your images, or pick a dataset and a named query pool.")
        values["data_dir"] = upload if upload and Path(upload).is_dir() else None
        budget = values.get("budget")
        if isinstance(budget, (int, float)) and budget > PUBLIC_MAX_BUDGET:
            return None, None, (f"**Cannot start:** this public Space runs at most {PUBLIC_MAX_BUDGET:,} queries per run; "
                                "lower the budget (the Results tab has the larger grids, precomputed).")
    try:
        config = ExperimentConfig.from_inputs(values)
        guess = estimate(config)
    except FmstealError as error:
        return None, None, f"**Cannot start:** {error}"
    if guess["refused"]:
        return None, guess, f"**Refused.** {guess['message']}"
    return config, guess, guess["message"]


def scenario_seconds(name: str, values: dict, upload: str | None = None) -> float | None:
    """How long the scenario's runs take one after another, as estimated now (None: one cannot run)."""
    seconds = 0.0
    for run in classroom.scenario_runs(name, values):
        config, guess, _ = check(run["values"], upload)
        if config is None:
            return None
        seconds += guess["seconds"]
    return seconds


def scenario_label(name: str, values: dict, upload: str | None = None) -> str:
    """A scenario button's text: its name and its estimated time."""
    seconds, title = scenario_seconds(name, values, upload), classroom.SCENARIOS.get(name).help
    return f"{title} (not with these settings)" if seconds is None else f"{title} · ~{duration(seconds)}"


def visitor_address() -> str | None:
    """The address the current request came from, the server's own key for a visitor (a client picks its owner
    token, not its address): on a Space the hop its proxy appends to X-Forwarded-For, else the connection's."""
    from gradio.context import LocalContext  # the request of the event being handled, UI or API alike

    request = LocalContext.request.get(None)
    if request is None:
        return None
    forwarded = request.headers.get("x-forwarded-for", "") if os.environ.get("SPACE_ID") else ""
    return forwarded.split(",")[-1].strip() or (request.client.host if request.client else None)


def submit(values: dict, owner: str, upload: str | None = None) -> tuple[str, str, str]:
    """Queue the visitor's job (or explain why not): (job id or "", status line, estimate note)."""
    config, guess, note = check(values, upload)
    if config is None:
        return "", note, note
    try:
        job_id = store().submit(config, owner, estimate_s=guess["seconds"], visitor=visitor_address())
    except FmstealError as error:  # Busy: too many runs of this visitor's or on the server
        return "", f"**Cannot start:** {error}", note
    return job_id, status_line(store().snapshot(job_id, owner)), note


def cancel_run(job_id: str, owner: str) -> str:
    """Cancel the visitor's job; its status line."""
    store().cancel(job_id, owner)
    return status_line(store().snapshot(job_id, owner))


def skip_evaluations(job_id: str, owner: str) -> str:
    """Skip the evaluations of one of your runs: its result comes as soon as the steal ends; its status line."""
    store().skip_evaluations(job_id, owner)
    return status_line(store().snapshot(job_id, owner))


def run_outputs(card: dict | None, checkpoints: list[dict], budget: int, stolen: dict | None = None) -> dict:
    """Curve, confusion, per-class, summary, gallery and consequences of one run (a live job's or a shared
    card's), by live-output name. `stolen` (the card without evaluations, while they run) stands in for the
    result until `card` comes."""
    result = card or stolen
    victim_accuracy = result["victim_accuracy"] if result else None
    running = "" if card or not stolen else (
        "\n\n*The evaluations are running; their results appear below when they finish (see the status line).*")
    findings = "".join(f"\n\n**{name}:** {finding}" for name, finding in evaluation_findings(card))
    summary = plots.summary_markdown(result, labels()) + running + live.defence_summary(card) + findings if result else ""
    return {"curve": plots.curve_figure(result["curve"] if result else checkpoints, victim_accuracy, budget),
            "confusion": plots.confusion_figure(result), "per_class": plots.per_class_figure(result),
            "summary": summary,
            "gallery": live.gallery_items(card), "transfer": consequences.transfer_figure(card),
            "examples": consequences.example_items(card), "corruptions": consequences.corruption_table(card)}


def poll(session: list[str], drawn: dict | None, shown: list[str] | None, owner: str) -> dict:
    """Status every tick; figures, comparison, gallery and downloads only when something new arrived.

    Returns {live-output name: value}; a name left out keeps what the page shows. `drawn` is what the page shows:
    {"view": its jobs, checkpoints and cards, so progress ticks send no figures; "offered": the runs its Show list
    has, so a run new to it is shown and one the visitor hid stays hidden}.
    """
    snapshots = live.read_session(store(), session, owner)
    job_id = live.current_job(snapshots)
    snap = snapshots.get(job_id)
    if snap is None:  # no job yet, or Start was refused: leave its message in place
        return {"job": job_id, "timer": gr.Timer(active=False)}
    runs = live.session_runs(snapshots)
    timer = gr.Timer(active=any(run["status"] not in TERMINAL for run in runs) or snap["status"] not in TERMINAL)
    showing = f"{live.session_signature(snapshots)}#{job_id}#{sorted(shown or [])}"
    drawn = drawn or {}
    if showing == drawn.get("view"):
        return {"job": job_id, "status": status_line(snap), "timer": timer}
    names = labels()
    choices = [(classroom.run_label(r["config"], names), r["id"]) for r in runs]
    offered = set(drawn.get("offered") or [])
    visible = [r["id"] for r in runs if shown is None or r["id"] in shown or r["id"] not in offered]
    hidden = frozenset(r["id"] for r in runs) - set(visible)
    comparison = classroom.comparison_figure(runs, names, results_table(), hidden)
    card = snap["card"]
    files = served_copies(store().files(job_id, owner) if card else None, job_id)
    budget = snap["config"]["budget"] if snap["config"] else START_BUDGET
    return {"job": job_id, "status": status_line(snap),
            **run_outputs(card, snap["checkpoints"], budget, snap.get("stolen")),
            "card_file": gr.DownloadButton(value=files[0], visible=files[0] is not None),
            "curve_file": gr.DownloadButton(value=files[1], visible=files[1] is not None),
            "comparison": comparison, "shown": gr.CheckboxGroup(choices=choices, value=visible),
            "share": gr.Button(visible=bool(card)), "timer": timer,
            "drawn": {"view": showing, "offered": [r["id"] for r in runs]}}


def shared_folder() -> Path:
    return settings.current().runs / "shared"


def share_link(job_id: str, owner: str, request: gr.Request) -> str:
    """A link that reopens the visitor's current run's results (and nothing else) in any browser."""
    snap = store().snapshot(job_id, owner)
    if not snap or not snap["card"]:
        return "Share works once the run is done."
    token = sharing.share(snap["card"], shared_folder())
    base = str(request.request.base_url) if request is not None and request.request is not None else "/"
    return f"Share this run: [{base}?run={token}]({base}?run={token})"


def job_state(job_id: str, owner: str) -> dict:
    """The state of one of your jobs as JSON (status, checkpoints, run card, ...); `owner` is the token you started it with."""
    return store().snapshot(job_id, owner) or {"status": "lost", "error": "No job id given."}


def cancel_job(job_id: str, owner: str) -> str:
    """Cancel one of your jobs; its status line."""
    return cancel_run(job_id, owner)


def estimate_text(**values) -> str:
    """The estimate shown before Start (or the reason not to start), for the given options."""
    return check(values)[2]


def start_job(owner: str, **values) -> dict:
    """Queue an experiment as `owner` (a private token of 16+ characters; keep it to poll and cancel):
    {"job_id", "status", "message"} (job_id "" when refused)."""
    job_id, status, note = submit(values, owner)
    return {"job_id": job_id, "status": status, "message": note}


def budget_slider(field, value) -> gr.Slider:
    return gr.Slider(0, 20000, value=value, step=100, label=field.title, info=field.help, elem_id="budget")


def steal_tab(demo: gr.Blocks) -> None:
    """The job controls, live outputs and the classroom tools, and what `demo` does when a page loads."""
    public = settings.current().public
    fields = page_fields()
    form = Form(fields, {"budget": START_BUDGET, "data_dir": settings.current().data_dir or None},
                widgets={"budget": budget_slider})
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=420):
            if public:
                gr.Markdown(CPU_SPACE_NOTE, elem_id="space-note")
            form.render(advanced=False)
            estimate_box = gr.Markdown(elem_id="estimate")
            with gr.Row():
                start_button = gr.Button("Start", variant="primary", elem_id="start")
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel")
                skip_button = gr.Button("Skip the evaluations", elem_id="skip")
            with gr.Group(elem_id="scenarios"):
                gr.Markdown("**One-press scenarios** (queue the runs they need; a warm cache answers in seconds)")
                scenario_buttons = {entry.name: gr.Button(entry.help, size="sm", elem_id=f"scenario-{entry.name}")
                                    for entry in classroom.SCENARIOS}
                look_for = gr.Markdown(elem_id="look-for")
            presenter = gr.Checkbox(False, label="Presenter mode (large type, high contrast, fewer controls)",
                                    elem_id="presenter")
            with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                upload_file = gr.File(label="Your images: a .zip or .tar.gz laid out train/<class>/*.jpg and "
                                            "test/<class>/*.jpg", file_types=[".zip", ".gz", ".tgz"],
                                      visible=public, elem_id="upload")
                upload_note = gr.Markdown(visible=public, elem_id="upload-note")
                form.render(advanced=True)
        with gr.Column(scale=3, elem_id="run-view"):
            status = gr.Markdown(status_line(None), elem_id="status")
            curve = gr.Plot(plots.curve_figure([], budget=START_BUDGET), label="Agreement vs queries", elem_id="curve")
            with gr.Row(elem_id="run-plots"):
                confusion = gr.Plot(plots.confusion_figure(None), label="Confusion", elem_id="confusion")
                per_class = gr.Plot(plots.per_class_figure(None), label="Per class", elem_id="per-class")
            summary = gr.Markdown(elem_id="summary")
            with gr.Row():
                card_file = gr.DownloadButton("Run card (JSON)", visible=False, size="md", elem_id="card-file")
                curve_file = gr.DownloadButton("Curve (CSV)", visible=False, size="md", elem_id="curve-file")
                share_button = gr.Button("Share", visible=False, size="md", elem_id="share")
            share_box = gr.Markdown(elem_id="share-link")
            comparison = gr.Plot(classroom.comparison_figure([], {}), label="This session's runs", elem_id="comparison")
            with gr.Row():
                shown = gr.CheckboxGroup([], label="Show", elem_id="shown", scale=4)
                clear_button = gr.Button("Clear finished runs", size="sm", elem_id="clear", scale=1)
            gallery = gr.Gallery(label="Where the thief agrees and disagrees with the victim", columns=6, height=260,
                                 elem_id="gallery")
            with gr.Accordion("What the thief can do now", open=True, elem_id="consequences"):
                transfer_plot = gr.Plot(consequences.transfer_figure(None), show_label=False, elem_id="transfer")
                transfer_examples = gr.Gallery(label="Crafted on the stolen copy, shown to the victim: clean, then "
                                                     "adversarial", columns=8, height=220, elem_id="transfer-examples")
                corruption_box = gr.Dataframe(headers=["corruption", "severity", "victim acc. %", "thief acc. %",
                                                       "agreement %"], label="Inherited robustness", elem_id="corruptions")
    job_box = gr.Textbox(visible=False, label="job id")
    owner = gr.BrowserState("", storage_key="fmsteal_owner", secret=browser_secret(settings.current().cache))
    session = gr.BrowserState([], storage_key="fmsteal_session")
    upload = gr.State(None)  # server-side: the path of this visitor's extracted upload
    drawn = gr.State({})
    timer = gr.Timer(1.0, active=False)

    def show_estimate(data: dict) -> str:
        return check(form.values(data), data[upload])[2]

    def show_scenario_labels(data: dict) -> list:
        values = form.values(data)
        return [gr.Button(scenario_label(name, values, data[upload])) for name in scenario_buttons]

    def press_start(data: dict):
        job_id, status_text, note = submit(form.values(data), data[owner], data[upload])
        if not job_id:
            return gr.skip(), status_text, note, gr.Timer(active=False)
        return (data[session] or []) + [job_id], status_text, note, gr.Timer(active=True)

    def scenario(name: str):
        def queue_runs(data: dict):
            queued, notes = [], []
            for run in classroom.scenario_runs(name, form.values(data)):
                job_id, status_text, _ = submit(run["values"], data[owner], data[upload])
                (queued if job_id else notes).append(job_id or status_text)
            text = classroom.look_for(name) + "".join(f"\n\n{n}" for n in notes)
            return (data[session] or []) + queued, text, gr.Timer(active=bool(queued))

        return queue_runs

    def take_upload(file, request: gr.Request):
        if file is None:
            return None, ""
        uploads.sweep_uploads()  # everyone's uploads past their lifetime go, at every upload
        try:
            found = uploads.extract_upload(file, visitor=request.session_hash, name=Path(file).name)
        except FmstealError as error:
            return None, f"**Upload refused:** {error}"
        finally:
            drop_gradio_copy(file)
        return str(found.path), f"Using **{found.description}**."

    live_outputs = {"job": job_box, "status": status, "curve": curve, "confusion": confusion,
                    "per_class": per_class, "summary": summary, "card_file": card_file, "curve_file": curve_file,
                    "comparison": comparison, "shown": shown, "gallery": gallery, "transfer": transfer_plot,
                    "examples": transfer_examples, "corruptions": corruption_box, "share": share_button,
                    "timer": timer, "drawn": drawn, "owner": owner, "session": session}

    def on_page(values: dict) -> dict:
        """{live-output name: value} as the {component: value} Gradio sends; components left out keep theirs."""
        return {live_outputs[name]: value for name, value in values.items()}

    def tick(session_ids: list[str], drawn_now: dict, shown_ids: list[str] | None, token: str) -> dict:
        return on_page(poll(session_ids, drawn_now, shown_ids, token))

    def redraw(session_ids: list[str], shown_ids: list[str] | None, token: str) -> dict:
        return on_page(poll(session_ids, None, shown_ids, token))

    def welcome(token: str, session_ids: list[str] | None, request: gr.Request) -> dict:
        """Page load: this browser's token (made on the first visit), a shared run if the link has one, else
        the browser's earlier runs."""
        token = token or new_owner_token()
        card = sharing.shared(request.query_params.get("run"), shared_folder()) if request is not None else None
        if card:
            return on_page({"owner": token, "job": "", **run_outputs(card, [], card["config"]["budget"]),
                            "status": f"**Shared run** · {classroom.run_label(card['config'], labels())}",
                            "timer": gr.Timer(active=False), "drawn": {"view": "shared"}})
        known = live.known(live.read_session(store(), session_ids, token))
        if session_ids and not known:  # every run of this browser was lost (a restart, or expired): say so
            return on_page({"owner": token, "session": [], "job": "", "timer": gr.Timer(active=False), "drawn": {},
                            "status": status_line(store().snapshot(session_ids[-1], token))})
        return on_page({"owner": token, "session": known, **poll(known, None, None, token)})

    typed = (gr.Textbox, gr.Number)  # typed values: estimate once committed, not per keystroke
    estimate_triggers = [demo.load, upload.change]
    for widget in form.widgets.values():
        estimate_triggers += [widget.blur, widget.submit] if isinstance(widget, typed) else [widget.change]
    # One listener per output for all of them: a page's estimates run one at a time and the last one is of the form
    # as it is now (a listener per trigger ran at once, and a slow early estimate could land last). The form's own
    # estimate has a listener apart from the scenario buttons', so it never waits for the four scenarios' pricing
    # (which can be measuring speeds). Visitors run concurrently.
    for show, shown_in in ((show_estimate, estimate_box), (show_scenario_labels, list(scenario_buttons.values()))):
        gr.on(estimate_triggers, show, form.inputs | {upload}, shown_in, api_visibility="private",
              trigger_mode="always_last", concurrency_limit=None)
    upload_file.upload(take_upload, upload_file, [upload, upload_note], api_visibility="private")
    page = [widget for name, widget in live_outputs.items() if name not in ("owner", "session")]  # what ticks redraw
    refresh = (redraw, [session, shown, owner], page)
    after = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
    state = form.inputs | {session, owner, upload}
    start_button.click(press_start, state, [session, status, estimate_box, timer],
                       api_visibility="private").then(*refresh, **after)
    for name, button in scenario_buttons.items():
        button.click(scenario(name), state, [session, look_for, timer], api_visibility="private").then(*refresh, **after)
    cancel_button.click(cancel_run, [job_box, owner], status, api_visibility="private", concurrency_limit=None)
    skip_button.click(skip_evaluations, [job_box, owner], status, api_visibility="private", concurrency_limit=None)
    timer.tick(tick, [session, drawn, shown, owner], page, api_visibility="private", show_progress="hidden",
               concurrency_limit=None)
    shown.input(tick, [session, drawn, shown, owner], page, **after)  # hiding a run keeps the rest as shown
    clear_button.click(lambda ids, token: [j for j in ids or [] if (store().snapshot(j, token) or {}).get("status")
                                           not in TERMINAL], [session, owner], session,
                       api_visibility="private").then(*refresh, **after)
    share_button.click(share_link, [job_box, owner], share_box, api_visibility="private")
    presenter.change(None, presenter, None, js="(on) => { window.fmstealPresenter(on); return []; }")
    gr.api(job_state, api_name="job", concurrency_limit=None)
    gr.api(cancel_job, api_name="cancel", concurrency_limit=None)
    gr.api(skip_evaluations, api_name="skip", concurrency_limit=None)
    gr.api(api_function(fields, start_job, "start", start_job.__doc__, first=("owner", str)), api_name="start")
    gr.api(api_function(fields, estimate_text, "estimate", estimate_text.__doc__), api_name="estimate",
           concurrency_limit=None)
    demo.load(welcome, [owner, session], list(live_outputs.values()), api_visibility="private")


def results_tab() -> None:
    table = results.load_tables()
    found = results.views(table)
    if not found["heatmaps"]:
        gr.Markdown("No precomputed results are installed (see `precomputed/`).")
        return
    heatmaps = found["heatmaps"]
    gr.Markdown("Precomputed agreement between every victim and thief: the paper's tables and the project's own "
                "measured grid. Rows: the victim's backbone; columns: the thief's.")
    heat_choice = gr.Dropdown([(results.view_label(v, table), i) for i, v in enumerate(heatmaps)],
                              value=heatmaps.index(found["default_heatmap"]), label="Table",
                              elem_id="results-table")
    figure, finding = results.heatmap_figure(table, **_heatmap_args(found["default_heatmap"]))
    heat_plot = gr.Plot(figure, show_label=False, elem_id="results-heatmap")
    heat_note = gr.Markdown(f"**Finding.** {finding}", elem_id="results-finding")
    heat_choice.change(lambda i: _finding(results.heatmap_figure(table, **_heatmap_args(heatmaps[i]))), heat_choice,
                       [heat_plot, heat_note], api_visibility="private")
    curves = found["curves"]
    if curves:
        curve_choice = gr.Dropdown([(results.view_label(v, table), i) for i, v in enumerate(curves)],
                                   value=curves.index(found["default_curve"]), label="Budget curve")
        figure, finding = results.budget_curve_figure(table, **_curve_args(found["default_curve"]))
        curve_plot = gr.Plot(figure, show_label=False, elem_id="results-curve")
        curve_note = gr.Markdown(f"**Finding.** {finding}")
        curve_choice.change(lambda i: _finding(results.budget_curve_figure(table, **_curve_args(curves[i]))),
                            curve_choice, [curve_plot, curve_note], api_visibility="private")
    defences_section()
    consequences_section()


def defences_section() -> None:
    """The precomputed defence grid: protection (thief agreement) against utility (honest users' accuracy)."""
    cells = defence_results.load_defence_cells()
    if cells.empty:
        return
    gr.Markdown("### Which defence protects, and at what cost?\nEach defence sits inside the victim's API; the "
                "thief cannot tell it is there. Down is better protection, left is cheaper for honest users.")
    outputs = [o for o in ("label", "probs") if (cells["output"] == o).any()]
    output = gr.Radio([(output_name(o), o) for o in outputs], value=outputs[0], label="The API answers",
                      elem_id="defence-output")
    plot = gr.Plot(defence_results.protection_figure(cells, outputs[0]), show_label=False, elem_id="defence-plot")
    note = gr.Markdown(f"**Finding.** {defence_results.protection_finding(cells, outputs[0])}",
                       elem_id="defence-finding")
    gr.Dataframe(defence_results.summary_rows(cells), headers=defence_results.SUMMARY_HEADERS, interactive=False,
                 wrap=True, label="Every defence setting (mean ± 1 sd over seeds, n in brackets)")
    output.change(lambda o: (defence_results.protection_figure(cells, o),
                             f"**Finding.** {defence_results.protection_finding(cells, o)}"),
                  output, [plot, note], api_visibility="private")


def consequences_section() -> None:
    """The precomputed consequences grid: agreement against adversarial transfer from the stolen copy."""
    cells = consequence_results.load_consequence_cells()
    if cells.empty:
        return
    gr.Markdown("### What does a closer copy let the thief do?\nAdversarial examples crafted offline on the "
                "stolen copy, shown to the real victim, beside a model trained on true labels and random noise.")
    gr.Plot(consequence_results.transfer_scatter(cells), show_label=False, elem_id="transfer-plot")
    gr.Markdown(f"**Finding.** {consequence_results.transfer_finding(cells)}", elem_id="transfer-finding")
    swept = transfer_sweep_results.load_sweep_cells()
    if not swept.empty:
        gr.Markdown("#### Over smaller budgets\nWhere an attack is saturated at 8/255 (both models fool the victim on "
                    "nearly every image), smaller budgets show whether the copy's examples transfer better.")
        gr.Plot(transfer_sweep_results.sweep_figure(swept), show_label=False, elem_id="transfer-sweep-plot")
        gr.Markdown(f"**Finding.** {transfer_sweep_results.sweep_grid_finding(swept)}",
                    elem_id="transfer-sweep-finding")
    authors = adversarial_fidelity_results.load_fidelity_cells()
    if not authors.empty:
        gr.Markdown("#### In the paper authors' setting\nTheir code scores transfer as *adversarial fidelity*: on how "
                    "many adversarial images (right or wrong) thief and victim still agree. Measured here (grid "
                    f"`{adversarial_fidelity_results.FIDELITY_GRID}`: the thefts above).\n\n"
                    f"**Finding.** {adversarial_fidelity_results.fidelity_finding(authors)}",
                    elem_id="adversarial-fidelity-finding")


def _finding(figure_and_sentence: tuple) -> tuple:
    figure, sentence = figure_and_sentence
    return figure, f"**Finding.** {sentence}"


def _heatmap_args(view: dict) -> dict:
    return {k: view[k] for k in ("dataset", "victim_mode", "budget", "output", "source", "strategy", "grid") if k in view}


def _curve_args(view: dict) -> dict:
    return {k: view[k] for k in ("dataset", "victim_mode", "output", "thief", "strategy", "grid") if k in view}


def drop_gradio_copy(file: str) -> None:
    """Delete the copy of an uploaded archive Gradio stored, once extracted or refused (and its folder when empty).

    Only a file inside Gradio's upload folder (GRADIO_TEMP_DIR) is deleted, never another path a request names.
    """
    home, path = Path(get_upload_folder()).resolve(), Path(file).resolve()
    if path.parent.parent != home:  # Gradio stores an upload as <its folder>/<hash of the file>/<its name>
        return
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def forget_uploads(request: gr.Request) -> None:
    """A visitor's session ended: delete their uploads."""
    uploads.remove_uploads(request.session_hash)


def build() -> gr.Blocks:
    lifetime = int(settings.current().upload_seconds)  # files Gradio stored (uploads never taken too) go after it
    with gr.Blocks(title="fmsteal: watch a model get stolen", fill_width=True,
                   delete_cache=(max(60, lifetime // 4), lifetime)) as demo:
        gr.Markdown("# fmsteal: watch a model get stolen\nA victim classifier answers queries; a thief "
                    "trains on nothing but those answers. How closely can it copy the victim?")
        with gr.Tabs():
            with gr.Tab("Steal a model", id="steal"):
                steal_tab(demo)
            with gr.Tab("Results", id="results"):
                results_tab()
            with gr.Tab("About", id="about"):
                gr.Markdown((REPO / "fmsteal" / "service" / "about.md").read_text(), elem_id="about-text")
        demo.unload(forget_uploads)
    return demo


def main() -> None:
    remove_stale_temporaries()  # half-written files of runs killed with the last server
    uploads.sweep_uploads()
    if settings.current().warm_pack:  # precomputed features for a fresh server; runs wait for them (await_pack)
        install_in_background(settings.current().warm_pack)
    build().queue(default_concurrency_limit=None).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="orange"), css=CSS, js=JS, head=HEAD,
        footer_links=["api"],
        max_file_size=settings.current().upload_max_bytes)  # refused by Gradio before a byte is stored


if __name__ == "__main__":
    main()
