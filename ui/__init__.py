"""The dashboard's shared parts, used by dashboard.py and the pages (pages/ holds only pages).

    sidebar    the sidebar's controls and the link that reproduces the view
    loaders    cached models, data, forecasts and calibrations behind the pages
    widgets    what several pages show: headline, charts, downloads, messages
"""
