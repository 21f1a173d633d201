"""No server path reaches a visitor: the dashboard's pages, messages and address bar, the command line's scan and
forecast name the model by its label (a run's name, a preset, a hub id) and links resolve that label back through the
operator's list; the operator's log keeps the paths."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from path_probe import leaks, page_texts
from test_app import PARITY, ROOT, SMALL, calibrations_end, kept_forecasts, run  # noqa: F401 (fixture)
from test_checkpoints import trained_run

from kronos.cli import main
from kronos.model import checkpoints


@pytest.fixture
def served(filled, monkeypatch, tmp_path):
    """The operator's setup in a temporary folder: KRONOS_MODEL a checkpoint folder called `served`, a models folder
    holding the training run `btcrun`, the store holding 200 BTC/USDT candles."""
    shutil.copytree(PARITY, tmp_path / "served")
    monkeypatch.setenv("KRONOS_MODEL", str(tmp_path / "served" / "model"))
    monkeypatch.setenv("KRONOS_TOKENIZER", str(tmp_path / "served" / "tokenizer"))
    monkeypatch.setenv("KRONOS_MODELS", str(tmp_path / "models"))
    return trained_run(tmp_path / "models", "btcrun")


def unseen(app, tmp_path) -> None:
    """Nothing on the page, in the sidebar or in the address bar names the temporary folder or the repository."""
    assert not leaks(page_texts(app), tmp_path, ROOT)


def test_no_page_names_a_server_path(served, tmp_path):
    app = run(query=SMALL)
    assert app.query_params["model"] == "served" and "tokenizer" not in app.query_params
    assert "Forecast by **served**." in app.warning[0].value
    unseen(app, tmp_path)
    app.selectbox(key="ctl.model").set_value("trained:btcrun")
    app = run(app=app)
    assert "Forecast by **btcrun**." in app.warning[0].value and app.query_params["model"] == "trained:btcrun"
    unseen(app, tmp_path)
    run("pages/sample_paths.py", app=app)
    unseen(app, tmp_path)
    run("pages/track_record.py", app=app)
    app.number_input(key="track.origins").set_value(4)
    app.number_input(key="track.every").set_value(10)
    run(app=app).button(key="track.run").click()
    run(app=app)
    assert any("Weights: **btcrun**" in m.value for m in app.markdown)
    unseen(app, tmp_path)
    run("pages/markets.py", app=app)
    app.toggle(key="markets.stored").set_value(True)
    run(app=app).button(key="markets.run").click()
    run(app=app)
    scan = app.session_state["markets.result"][1]
    assert scan.model == "btcrun" and "trained%3Abtcrun" in app.dataframe[0].value["live"].iloc[0]
    unseen(app, tmp_path)
    assert not leaks([scan.model_dump_json(), scan.to_csv()], tmp_path, ROOT)  # the downloads


def test_weights_that_fail_to_load_are_named_by_their_run_and_the_log_has_the_path(served, tmp_path, caplog):
    (tmp_path / "served" / "model" / "model.safetensors").unlink()
    with caplog.at_level(logging.WARNING, "kronos.dashboard"):
        app = run()
    assert app.error[0].value.startswith("The model could not be loaded: directory served/model lacks "
                                         "model.safetensors")
    unseen(app, tmp_path)
    assert str(tmp_path / "served" / "model") in caplog.text


def test_a_store_fault_is_shown_without_the_stores_path(served, tmp_path, monkeypatch, caplog):
    (tmp_path / "damaged.sqlite").write_bytes(b"not SQLite at all" * 100)
    monkeypatch.setenv("KRONOS_STORE", str(tmp_path / "damaged.sqlite"))
    with caplog.at_level(logging.WARNING, "kronos.dashboard"):
        app = run()
    assert app.error[0].value.startswith("The server's local store is not an SQLite database, and no exchange "
                                         "answered either")
    unseen(app, tmp_path)
    assert str(tmp_path / "damaged.sqlite") in caplog.text


def test_a_link_with_the_label_reproduces_the_model(served, tmp_path):
    picked = run(query=SMALL)
    picked.selectbox(key="ctl.model").set_value("trained:btcrun")
    picked = run(app=picked)
    link = dict(picked.query_params)
    for name in ("trained:btcrun", "btcrun"):  # the picker's label, and the name answers give
        again = run(query={**link, "model": name})
        assert again.selectbox(key="ctl.model").value == "trained:btcrun"
        assert again.query_params["model"] == link["model"] == "trained:btcrun"
        np.testing.assert_array_equal(kept_forecasts(again)[0].paths, kept_forecasts(picked)[-1].paths)
    served_again = run(query={**SMALL, "model": "served"})
    np.testing.assert_array_equal(kept_forecasts(served_again)[0].paths, kept_forecasts(picked)[0].paths)


def test_an_old_link_with_a_path_resolves_where_allowed_and_the_address_bar_shows_the_label(served, tmp_path):
    old = {**SMALL, "model": str(served / "model"), "tokenizer": str(served / "tokenizer")}
    app = run(query=old)
    assert app.selectbox(key="ctl.model").value == "trained:btcrun" and not app.error
    assert app.query_params["model"] == "trained:btcrun" and "tokenizer" not in app.query_params
    unseen(app, tmp_path)
    shutil.copytree(served, tmp_path / "elsewhere")  # the same run outside the models folder: not the operator's
    refused = run(query={**SMALL, "model": str(tmp_path / "elsewhere" / "model"),
                         "tokenizer": str(tmp_path / "elsewhere" / "tokenizer")})
    assert refused.error[0].value == f"The model could not be loaded: {checkpoints.NOT_ALLOWED}"


def test_the_command_lines_scan_and_forecast_name_the_run_not_its_path(served, tmp_path, capsys):
    model = ["--source", "store", "--model", str(served / "model"), "--tokenizer", str(served / "tokenizer"),
             "--horizon", "4", "--samples", "2", "--lookback", "64"]
    assert main(["scan", "--symbols", "BTC/USDT", "--json", *model]) == 0
    scanned = capsys.readouterr().out
    assert json.loads(scanned)["model"] == "btcrun"
    assert main(["scan", "--symbols", "BTC/USDT", *model]) == 0
    table = capsys.readouterr().out
    assert "model btcrun," in table
    assert main(["forecast", *model]) == 0
    forecast = capsys.readouterr().out
    assert json.loads(forecast)["model"] == "btcrun"
    assert not leaks([scanned, table, forecast], tmp_path, ROOT)
