"""Market scans: a watchlist's candles fetched together, every market forecast in shared loops, ranked by its
combined forecast.

    watchlist  the markets of one scan and their candles
    ranking    `scan`: forecast every market and rank the rows
    combining  `ScanCalibration`: each market's combined forecast from its record, stored or fitted now
"""
