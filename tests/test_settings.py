"""Settings: defaults < config.toml < DATAFLOW_LITE_* < test config; mistakes stop start-up."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from dataflow_lite import create_app
from dataflow_lite.adapter import adapter_settings, discover_adapters
from dataflow_lite.settings import SETTINGS, ConfigError, load_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_each_source_overrides_the_one_before(tmp_path: Path):
    (tmp_path / "config.toml").write_text("per_page = 5\nmax_per_page = 50\napi_key_days = 7\n")
    environ = {"DATAFLOW_LITE_MAX_PER_PAGE": "60", "DATAFLOW_LITE_API_KEY_DAYS": "8"}
    values = load_settings(tmp_path, environ, {"api_key_days": 9})
    assert (values["per_page"], values["max_per_page"], values["api_key_days"]) == (5, 60, 9)
    assert values["busy_timeout_ms"] == 30_000  # the default


@pytest.mark.parametrize(
    ("config", "environ", "overrides", "message"),
    [
        ("per_pag = 5\n", {}, {}, "unknown setting 'per_pag'"),
        ("per_page = 'five'\n", {}, {}, "must be of type int"),
        ("per_page = true\n", {}, {}, "must be of type int"),
        ("", {"DATAFLOW_LITE_PER_PAGE": "lots"}, {}, "environment variable DATAFLOW_LITE_PER_PAGE"),
        ("", {"DATAFLOW_LITE_COLOUR": "blue"}, {}, "unknown setting 'colour'"),
        ("", {}, {"database": 3}, "must be of type str"),
        ("per_page = \n", {}, {}, "not valid TOML"),
    ],
)
def test_mistakes_stop_start_up_with_a_clear_message(tmp_path, config, environ, overrides, message):
    (tmp_path / "config.toml").write_text(config)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(tmp_path, environ, overrides)


def test_create_app_refuses_a_bad_config(tmp_path: Path):
    (tmp_path / "config.toml").write_text("max_upload_bytes = 'a lot'\n")
    with pytest.raises(ConfigError, match="max_upload_bytes"):
        create_app(instance_path=tmp_path)


def test_the_instance_folder_holds_its_state_with_private_keys(tmp_path: Path):
    app = create_app(instance_path=tmp_path / "instance")
    instance = Path(app.instance_path)
    for secret in ("secret_key", "password.key"):
        assert stat.S_IMODE((instance / secret).stat().st_mode) == 0o600
    assert (instance / "dataflow.sqlite3").is_file()
    assert (instance / "staging").is_dir()
    # A second start reuses the keys rather than replacing them.
    again = create_app(instance_path=instance)
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]


def test_every_setting_is_documented_in_the_readme():
    readme = README.read_text()
    for setting in SETTINGS + adapter_settings(discover_adapters()):
        assert f"`{setting.name}`" in readme, (
            f"README.md does not document the setting {setting.name}"
        )
