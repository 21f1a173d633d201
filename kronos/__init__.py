"""Kronos probabilistic forecasting: weight-compatible models, a cached Monte Carlo engine, data sources."""
