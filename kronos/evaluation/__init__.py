"""Walk-forward evaluation: scores, baselines and calibration from the past only, all on log returns of the close."""
