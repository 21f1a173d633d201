"""Serving forecasts to many callers: one batching thread per model, background jobs, the service's cache of
loaded models, and scale-out on a Ray cluster.

    batching   `Batcher`: requests from every thread gathered into shared generation loops
    jobs       `Jobs`: backtests and calibrations run behind, newest first, cancelled when nobody waits
    pieces     `Yielding`: a background job's forecasts sent a few histories at a time
    service    `ForecastService`: the loaded models, their batchers and the store, for the API and the dashboard
    cluster    `RayForecaster`: forecasts of many histories on Ray actors that each load the weights once
"""
