"""The sidebar: every forecast control in one place, kept in the session and mirrored into the URL.

The first run of a session reads the link's query parameters (a shared link reproduces the settings);
every run writes the current settings back, so the address bar is always a link to what is shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import streamlit as st

from kronos.errors import KronosError
from kronos.model.checkpoints import (
    DEFAULT_CONTEXT,
    PRESETS,
    TRAINED,
    Trained,
    TrainedRuns,
    allowed,
    link_name,
    model_label,
    resolve,
    select,
    trained_checkpoints,
)
from kronos.settings import (
    EXCHANGES,
    MODES,
    RANGES,
    Environment,
    ForecastSettings,
    MarketChoice,
    ModelChoice,
    help_texts,
)
from kronos.timeframes import TIMEFRAMES

OTHER = "directory or hub id"
OTHER_OFF = ("Other directories and hub ids are off on this server (only the server's configured model loads "
             "here); its operator can allow them with KRONOS_ALLOW_ANY_MODEL=1")
PRESET_LABELS = {name: preset.label for name, preset in PRESETS.items()}
MODE_LABELS = {"aligned": "Hourly aligned (closed candles)", "realtime": "Realtime (with the open candle)"}
MARKET_DEFAULTS = dataclasses.asdict(MarketChoice())
MARKET_OPTIONS = {"mode": MODES, "exchange": EXCHANGES, "timeframe": TIMEFRAMES}
READY, CURRENT, LINK_PROBLEMS = "ctl.ready", "ctl.current", "ctl.link_problems"


def tips(*settings: type) -> dict[str, str]:
    """Tooltips: the settings dataclasses' help texts (the CLI's and the API's too), each as a sentence."""
    return {name: text[0].upper() + text[1:] for kind in settings for name, text in help_texts(kind).items()}


TIPS = tips(ForecastSettings, MarketChoice)


@dataclass(frozen=True)
class Controls:
    """What the sidebar says: the sampling settings, the model (and how a link names it) and the market to forecast."""

    settings: ForecastSettings
    model: ModelChoice
    market_fields: dict[str, str]  # as typed: checked by `market()`, inside a page, where a problem can be shown
    model_query: dict[str, str]  # the model's label (kronos.model.checkpoints.link_name), or an "Other" choice as typed

    def market(self) -> MarketChoice:
        """The chosen market; InvalidInputError saying what is wrong with it."""
        return MarketChoice(**self.market_fields)

    def to_query(self) -> dict[str, str]:
        """The controls as URL query parameters: the model by its label, never its path."""
        return {**self.settings.to_query(), **self.model_query, **self.market_fields}


def _key(name: str) -> str:
    return f"ctl.{name}"


def _trained(runs: TrainedRuns) -> dict[str, Trained]:
    """The finished training runs of the models folder, by picker key."""
    return {TRAINED + run.name: run for run in runs.runs}


def _model_state(choice: ModelChoice, environment: Environment, runs: TrainedRuns) -> dict[str, str]:
    """Widget values showing a model choice: the picker's entry of the operator's model it is (by its link name: a
    preset, a training run, the configured model), or the 'other' fields."""
    name = link_name(choice, environment, runs)
    if name is not None:
        return {"model": name}
    return {"model": OTHER, "model_dir": choice.model, "tokenizer_dir": choice.tokenizer or ""}


def _initial_state(params: dict[str, str]) -> tuple[dict, list[str]]:
    """Widget values from the defaults, the environment and a link's query parameters; and what was wrong in it."""
    problems: list[str] = []
    try:
        settings = ForecastSettings.from_query(params)
    except KronosError as error:
        problems.append(str(error))
        settings = ForecastSettings()
    values = {name: value for name, value in vars(settings).items() if value is not None}
    values.setdefault("hour_idx", settings.horizon)
    environment, runs = Environment.read(), trained_checkpoints()
    choice = resolve(params["model"], params.get("tokenizer") or None, environment, runs) if params.get("model") \
        else environment.model  # a link names the model by its label; an old one's path resolves where allowed
    values |= _model_state(choice, environment, runs)
    for name, default in MARKET_DEFAULTS.items():
        value = params.get(name, default)
        if name in MARKET_OPTIONS and value not in MARKET_OPTIONS[name]:
            problems.append(f"{name} must be one of {', '.join(MARKET_OPTIONS[name])}, got {value!r}")
            value = default
        values[name] = value
    return values, problems


def _context(choice: ModelChoice, runs: TrainedRuns) -> int:
    """The chosen model's context length, known without loading it (512 when it cannot be told, or when the choice
    is not allowed here: nothing of a refused path is looked at)."""
    if not allowed(choice, Environment.read(), runs):
        return DEFAULT_CONTEXT
    try:
        return select(choice.model, choice.tokenizer).max_context
    except KronosError:
        return DEFAULT_CONTEXT


def _model_controls(runs: TrainedRuns) -> tuple[ModelChoice, dict[str, str]]:
    """The model picker, the chosen model's caption or fields; the choice and how a link names it."""
    trained, environment = _trained(runs), Environment.read()
    labels = {**PRESET_LABELS, **{key: f"Trained: {run.name}" for key, run in trained.items()}}
    configured = link_name(environment.model, environment, runs)
    labels.setdefault(configured, f"Server's model: {model_label(environment.model.model)}")
    labels[OTHER] = "Other: a directory or hub id"
    if st.session_state[_key("model")] not in labels:  # a trained run that is gone since
        st.session_state[_key("model")] = next(iter(PRESET_LABELS))
    st.selectbox("Model", list(labels), key=_key("model"), format_func=labels.get,
                 help="Presets from the Hugging Face hub, your training runs (KRONOS_MODELS), or any checkpoint "
                      "where the server allows it (KRONOS_ALLOW_ANY_MODEL=1)")
    for note in runs.skipped:
        st.caption(f"Skipped training run {note}")
    chosen = st.session_state[_key("model")]
    if chosen in trained:
        st.caption(trained[chosen].summary())
    if chosen != OTHER:
        return resolve(chosen, None, environment, runs), {"model": chosen}
    free = environment.allow_any_model
    model = st.text_input("Model directory or hub id", key=_key("model_dir"), disabled=not free,
                          help="A folder with config.json and model.safetensors, or a hub id" + (
                              "" if free else f". {OTHER_OFF}")).strip()
    tokenizer = st.text_input("Tokenizer directory or hub id (optional)", key=_key("tokenizer_dir"),
                              disabled=not free,
                              help="Empty: the model folder's `tokenizer` subfolder or sibling").strip()
    choice = ModelChoice(model, tokenizer or None)
    if not free and choice != environment.model:
        st.caption(OTHER_OFF)
    return choice, {"model": model, **({"tokenizer": tokenizer} if tokenizer else {})}  # the visitor's own words


def _market_controls() -> dict[str, str]:
    st.radio("Data mode", MODES, key=_key("mode"), format_func=MODE_LABELS.get)
    st.selectbox("Exchange", EXCHANGES, key=_key("exchange"), help="Asked first; the others are tried after it")
    st.text_input("Symbol", key=_key("symbol"), help=TIPS["symbol"])
    st.selectbox("Timeframe", TIMEFRAMES, key=_key("timeframe"), help=TIPS["timeframe"])
    return {name: st.session_state[_key(name)].strip() for name in MARKET_DEFAULTS}


def _slider(label: str, name: str, step: float | int = 1, high: float | int | None = None, **options) -> None:
    low, top = RANGES[name]
    st.slider(label, low, top if high is None else high, step=step, key=_key(name), **{"help": TIPS[name], **options})


def _sampling_controls(context: int) -> ForecastSettings:
    longest = min(RANGES["lookback"][1], context)
    state = st.session_state
    state[_key("lookback")] = min(state[_key("lookback")], longest)
    _slider("Lookback (candles)", "lookback", high=longest,
            help=f"{TIPS['lookback']}; at most the model's context ({context})")
    _slider("Horizon (hours ahead)", "horizon")
    _slider("Sample paths", "samples")
    _slider("Temperature", "temperature", step=0.05)
    _slider("Top-p", "top_p", step=0.05)
    st.number_input("Top-k (0 = off)", *RANGES["top_k"], step=1, key=_key("top_k"), help=TIPS["top_k"])
    st.number_input("Seed", *RANGES["seed"], step=1, key=_key("seed"), help=TIPS["seed"])
    horizon = state[_key("horizon")]
    state[_key("hour_idx")] = min(state.get(_key("hour_idx"), horizon), horizon)
    if horizon > 1:
        st.slider("Hour index", 1, horizon, key=_key("hour_idx"), help=TIPS["hour_idx"])
    names = ("horizon", "samples", "temperature", "top_p", "top_k", "lookback", "seed", "hour_idx")
    return ForecastSettings(**{name: state[_key(name)] for name in names})


def draw() -> Controls:
    """Draw the controls in the sidebar, update the URL and return them (also kept for `current()`)."""
    state = st.session_state
    if READY not in state:
        values, state[LINK_PROBLEMS] = _initial_state(st.query_params.to_dict())
        for name, value in values.items():
            state[_key(name)] = value
        state[READY] = True
    with st.sidebar:
        for problem in state[LINK_PROBLEMS]:
            st.warning(f"The link's setting was ignored: {problem}")
        st.subheader("Model")
        runs = trained_checkpoints()
        model, model_query = _model_controls(runs)
        st.subheader("Market")
        market = _market_controls()
        st.subheader("Sampling")
        settings = _sampling_controls(_context(model, runs))
    controls = Controls(settings, model, market, model_query)
    query = controls.to_query()
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    state[CURRENT] = controls
    return controls


def current() -> Controls:
    """The controls the sidebar drew in this run (drawing them if a page runs on its own)."""
    return st.session_state[CURRENT] if CURRENT in st.session_state else draw()
