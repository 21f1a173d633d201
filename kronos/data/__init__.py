"""Candle data: reading files, checking candles, exchanges through ccxt, the local SQLite store."""
