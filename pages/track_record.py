"""Track record: a walk-forward backtest of the model on the market's stored candles or the custom data, scored
against baselines, raw and calibrated; run on request and kept for the session."""

import json

import streamlit as st

from kronos.charts import coverage_chart, crps_chart, pit_chart, reliability_chart
from kronos.evaluation.backtest import BacktestSettings, rows_needed
from kronos.summary import score_table
from pages import _controls, _loading, _show

MAX_ORIGINS = 500  # on the page; the command line takes more
KEPT = "track.kept"  # this page's inputs: Streamlit forgets a widget's value while another page shows

st.title("Track record")
st.markdown("How would the model have done on this data? At each origin it forecasts from the candles before it "
            "only, and the closes that followed score it, next to a random walk and a bootstrap of recent returns "
            "that see the same candles. **CRPS skill above 0 means better than the random walk; a calibrated 80% "
            "band holds about 80% of outcomes; a Brier score under 0.25 beats always answering 50%.**")
state = st.session_state
for key, value in state.setdefault(KEPT, {"track.source": "store", "track.origins": 100, "track.every": 24}).items():
    state.setdefault(key, value)
with _show.reported():
    controls = _controls.current()
    custom = state.get(_show.CUSTOM_CANDLES)
    fields = controls.market_fields
    sources = {"store": f"Stored {fields['symbol']} {fields['timeframe']} candles from {fields['exchange']}"}
    if custom is not None:
        sources["custom"] = f"Custom data '{custom.symbol}'"
    state["track.source"] = state["track.source"] if state["track.source"] in sources else "store"
    source = st.radio("Data", list(sources), format_func=sources.get, horizontal=True, key="track.source") \
        if custom is not None else "store"
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    origins = left.number_input("Origins", 1, MAX_ORIGINS, key="track.origins",
                                help="How many past forecasts to score: the latest ones")
    every = middle.number_input("Every (candles)", 1, 24 * 7, key="track.every",
                                help="Candles between origins")
    state[KEPT] = {key: state[key] for key in state[KEPT]}
    run = right.button("Run backtest", type="primary", icon=":material/play_arrow:", key="track.run")
    st.caption("Lookback, horizon, sample paths, temperature, top-p, top-k and seed come from the sidebar. Each "
               "origin's paths are kept in the local store, so a longer run only forecasts the new origins.")
    settings = BacktestSettings(origins, every, **controls.settings.engine_arguments())
    candles = custom if source == "custom" else _loading.stored_candles(controls.market(), rows_needed(settings))
    forecaster = _loading.model(controls.model)
    result = _loading.backtest(forecaster, candles, settings, run)
    if result is None:
        st.info("Press **Run backtest** to forecast every origin (tens of seconds for a hundred origins).")
        st.stop()

    scores, hour = result["scores"], controls.settings.hour_idx or settings.horizon
    raw, calibrated = scores["model"], scores["model_calibrated"]
    columns = st.columns(4)
    columns[0].metric("Origins", result["origins"],
                      help=f"{result['origin_times'][0]} to {result['origin_times'][-1]} UTC, every {every} candles")
    columns[1].metric(f"CRPS skill, hour {hour}", f"{result['skill']['model']['crps'][hour - 1]:+.0%}",
                      help="1 - model CRPS / random walk CRPS, raw paths: above 0 beats the random walk")
    columns[2].metric(f"80% band coverage, hour {hour}", f"{calibrated['coverage']['80'][hour - 1]:.0%}",
                      delta=f"raw {raw['coverage']['80'][hour - 1]:.0%}", delta_color="off", delta_arrow="off",
                      help="Share of outcomes inside the calibrated 80% band (raw: the paths' own band)")
    columns[3].metric(f"Brier upside, hour {hour}", f"{calibrated['brier_upside'][hour - 1]:.3f}",
                      delta=f"raw {raw['brier_upside'][hour - 1]:.3f} · always 50%: 0.250", delta_color="off",
                      delta_arrow="off", help="Calibrated upside probability; lower is better")
    if min(result["calibrated_origins"]) < result["origins"]:
        fewest, most = min(result["calibrated_origins"]), max(result["calibrated_origins"])
        st.info(f"Calibration learns only from outcomes known at each origin and needs {settings.min_count} of "
                f"them: {fewest if fewest == most else f'per hour ahead, {fewest} to {most}'} of "
                f"{result['origins']} origins were calibrated; the others keep their raw values.")
    left, right = st.columns(2)
    left.plotly_chart(crps_chart(result), key="track.crps")
    right.plotly_chart(reliability_chart(result), key="track.reliability")
    st.plotly_chart(coverage_chart(result), key="track.coverage")
    left, right = st.columns(2)
    left.plotly_chart(pit_chart(result), key="track.pit")
    right.markdown(_show.bullets([
        f"Data: {len(candles.frame)} {candles.symbol} {candles.timeframe} candles "
        f"({candles.exchange or candles.source}), {candles.frame['timestamps'].iloc[0]:%Y-%m-%d %H:%M} to "
        f"{candles.frame['timestamps'].iloc[-1]:%Y-%m-%d %H:%M} UTC",
        f"Weights: **{result['model']}** (fingerprint {forecaster.fingerprint})",
        f"Origins: {result['origins']}, {result['reused']} of them reused from the store",
        f"Baselines: log returns of the last {result['baseline_window']} candles before each origin",
        "Scores: on the close's log return from the last close before the origin; CRPS and band widths in "
        "log-return units"]))
    st.subheader("Scores per forecaster (mean over the hours ahead)")
    st.dataframe(score_table(result, by_hour=False), hide_index=True)
    with st.expander("Scores per hour ahead"):
        st.dataframe(score_table(result), hide_index=True)
    left, right = st.columns(2)
    left.download_button("Download scores per hour (CSV)", lambda: score_table(result).to_csv(index=False),
                         file_name="kronos_backtest_scores.csv", mime="text/csv", icon=":material/download:")
    right.download_button("Download backtest (JSON)", lambda: json.dumps(result), file_name="kronos_backtest.json",
                          mime="application/json", icon=":material/download:")
