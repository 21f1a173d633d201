"""The HTTP API's routers, one per concern: forecasts, backtest and track record, health."""
