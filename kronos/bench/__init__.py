"""Benchmarks whose figures go in docs/benchmarks.md (speed targets live here, not in tests):

    python -m kronos.bench [engine]   forecasts: cold and warm demo, small, max; the reference's recompute
    python -m kronos.bench backtest   200 origins in batches against 200 single forecasts
    python -m kronos.bench combined   the combined forecast of a useless model on real candles; the probability maps
    python -m kronos.bench training   training windows per second, per stage
    python -m kronos.bench api        the HTTP API under N concurrent clients, on one or many histories
    python -m kronos.bench hub        how soon an unreachable hub is reported
    python -m kronos.bench scan       20 stored markets: the scan command, shared loops against separate forecasts
    python -m kronos.bench calibrated-api  calibrate=true, fresh store: alone, 4 clients at once, a plain one meanwhile

Each takes --help. Random weights of the published shapes unless told otherwise; synthetic candles.
"""
