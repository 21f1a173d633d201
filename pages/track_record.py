"""Track record: a walk-forward backtest of the model on the market's stored candles or the custom data, scored
against baselines, raw, calibrated and combined (with the pool's weights); run on request and kept for the session."""

import json

import streamlit as st

from kronos.evaluation.backtest import BACKTEST_DEFAULTS, BacktestSettings, rows_needed
from kronos.evaluation.baselines import FIT_WINDOW
from kronos.evaluation.pooling import DEFAULT
from kronos.evaluation.registry import BASELINES, labels, pooled
from kronos.settings import ORIGIN_LIMITS
from kronos.views.charts import coverage_chart, crps_chart, pit_chart, reliability_chart, weights_chart
from kronos.views.texts import score_table
from ui import loaders, sidebar, widgets

TIPS = sidebar.tips(BacktestSettings)
KEPT = "track.kept"  # this page's inputs: Streamlit forgets a widget's value while another page shows

st.title("Track record")
st.markdown("How would the model have done on this data? At each origin it forecasts from the candles before it "
            f"only, and the closes that followed score it, next to volatility baselines ({labels(BASELINES)}) that "
            "see the same candles, and the combined forecast that pools them by their record. **CRPS skill above 0 "
            "means better than the random walk; a calibrated 80% band holds about 80% of outcomes; a Brier score "
            "under 0.25 beats always answering 50%.**")
state = st.session_state
for key, value in state.setdefault(KEPT, {"track.source": "store", "track.origins": BACKTEST_DEFAULTS.origins,
                                               "track.every": BACKTEST_DEFAULTS.every}).items():
    state.setdefault(key, value)
with widgets.reported():
    controls = sidebar.current()
    custom = state.get(widgets.CUSTOM_CANDLES)
    fields = controls.market_fields
    sources = {"store": f"Stored {fields['symbol']} {fields['timeframe']} candles from {fields['exchange']}"}
    if custom is not None:
        sources["custom"] = f"Custom data '{custom.symbol}'"
    state["track.source"] = state["track.source"] if state["track.source"] in sources else "store"
    source = st.radio("Data", list(sources), format_func=sources.get, horizontal=True, key="track.source") \
        if custom is not None else "store"
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    origins = left.number_input("Origins", 1, ORIGIN_LIMITS.page, key="track.origins", help=TIPS["origins"])
    every = middle.number_input("Every (candles)", 1, 24 * 7, key="track.every", help=TIPS["every"])
    state[KEPT] = {key: state[key] for key in state[KEPT]}
    run = right.button("Run backtest", type="primary", icon=":material/play_arrow:", key="track.run")
    st.caption("Lookback, horizon, sample paths, temperature, top-p, top-k and seed come from the sidebar. Each "
               "origin's paths are kept in the local store, so a longer run only forecasts the new origins.")
    settings = BacktestSettings(controls.settings.model_copy(update={"hour_idx": None}), origins=origins, every=every)
    candles = custom if source == "custom" else loaders.stored_candles(controls.market(), rows_needed(settings))
    forecaster = loaders.model(controls.model)
    result = loaders.backtest(forecaster, candles, settings, run)
    if result is None:
        st.info("Press **Run backtest** to forecast every origin (tens of seconds for a hundred origins).")
        st.stop()

    hour = controls.settings.hour_idx or settings.forecast.horizon
    scores, count = result.scores, len(result.origin_times)
    raw, combined, best = scores["model"], scores["combined"], BASELINES[result.best_baseline].label
    columns = st.columns(4)
    columns[0].metric("Origins", count, help=f"{result.origin_times[0]} to {result.origin_times[-1]} UTC, every "
                                             f"{every} candles")
    columns[1].metric(f"CRPS skill, hour {hour}", f"{result.skill['combined']['crps'][hour - 1]:+.0%}",
                      delta=f"model raw {result.skill['model']['crps'][hour - 1]:+.0%} · against the best "
                            f"baseline: {result.skill_best['combined']['crps'][hour - 1]:+.0%}", delta_color="off",
                      delta_arrow="off", help="1 - CRPS / random walk CRPS of the combined forecast (raw: the model's "
                                              "paths alone): above 0 beats the random walk")
    columns[2].metric(f"80% band coverage, hour {hour}", f"{combined.coverage['80'][hour - 1]:.0%}",
                      delta=f"model raw {raw.coverage['80'][hour - 1]:.0%}", delta_color="off", delta_arrow="off",
                      help="Share of outcomes inside the combined forecast's 80% band (raw: the paths' own band)")
    columns[3].metric(f"Brier upside, hour {hour}", f"{combined.brier_upside[hour - 1]:.3f}",
                      delta=f"model raw {raw.brier_upside[hour - 1]:.3f} · always 50%: 0.250", delta_color="off",
                      delta_arrow="off", help="The combined forecast's upside probability; lower is better")
    st.markdown(f"**The combined forecast** pools the calibrated model with the {labels(pooled())} "
                f"baselines, per hour ahead, with weights learnt from the outcomes known at each origin. At hour "
                f"{hour} it gave the model {result.weights['model_calibrated'][hour - 1]:.0%} weight on average; the "
                f"best baseline here is {best}.")
    fewest = min(min(result.calibrated_origins), min(result.pooled_origins))
    if fewest < count:
        st.info(f"Calibration and the pool's weights learn only from outcomes known at each origin and need "
                f"{settings.min_count} of them: at the hour with the fewest, {fewest} of {count} origins were "
                f"calibrated and pooled; the others keep the raw values and the {BASELINES[DEFAULT].label} "
                "baseline alone.")
    left, right = st.columns(2)
    left.plotly_chart(crps_chart(result), key="track.crps")
    right.plotly_chart(weights_chart(result), key="track.weights")
    st.plotly_chart(coverage_chart(result), key="track.coverage")
    left, right = st.columns(2)
    left.plotly_chart(reliability_chart(result), key="track.reliability")
    right.plotly_chart(pit_chart(result), key="track.pit")
    right.markdown(widgets.bullets([
        f"Data: {len(candles.frame)} {candles.symbol} {candles.timeframe} candles "
        f"({candles.exchange or candles.source}), {candles.frame['timestamps'].iloc[0]:%Y-%m-%d %H:%M} to "
        f"{candles.frame['timestamps'].iloc[-1]:%Y-%m-%d %H:%M} UTC",
        f"Weights: **{result.model}** (fingerprint {forecaster.fingerprint})",
        f"Origins: {count}, {result.reused} of them reused from the store",
        f"Baselines: log returns of the last {settings.forecast.lookback - 1} candles before each origin (GARCH(1,1): "
        f"fitted on up to {FIT_WINDOW:,} before it)",
        "Scores: on the close's log return from the last close before the origin; CRPS and band widths in "
        "log-return units"]))
    st.subheader("Scores per forecaster (mean over the hours ahead)")
    st.dataframe(score_table(result, by_hour=False), hide_index=True)
    with st.expander("Scores per hour ahead"):
        st.dataframe(score_table(result), hide_index=True)
    left, right = st.columns(2)
    left.download_button("Download scores per hour (CSV)", lambda: score_table(result).to_csv(index=False),
                         file_name="kronos_backtest_scores.csv", mime="text/csv", icon=":material/download:")
    right.download_button("Download backtest (JSON)", lambda: json.dumps(result.to_dict()),
                          file_name="kronos_backtest.json",
                          mime="application/json", icon=":material/download:")
