"""What front ends show, with no Streamlit here: Plotly charts and the headline, banner and table texts.

    charts     figures of a forecast and of a backtest
    texts      headline figures, the data banner, fingerprints, a template, a backtest's score table
"""
