"""Training and fine-tuning of the Kronos tokenizer and predictor (`python -m kronos train`).

data: candle series, the time split and normalised windows; models: starting weights; loop: one stage's
optimisation; state: resumable state without pickle; run: the stages in turn, the output folder, record.json.
"""
