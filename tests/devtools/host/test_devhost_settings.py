import json

import pytest

from devtools.host.settings import SettingsError, load_local_settings, read_route_prefix, resolve_references


def write(path, data, encoding="utf-8"):
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding=encoding)
    return path


def test_environment_wins(tmp_path):
    path = write(tmp_path / "local.settings.json", {"IsEncrypted": False, "Values": {"A": "file", "B": "file", "N": 3, "F": True}})
    env = {"A": "env"}
    applied = load_local_settings(path, env)
    assert env == {"A": "env", "B": "file", "N": "3", "F": "true"}
    assert applied == {"B": "file", "N": "3", "F": "true"}


def test_missing_file_and_no_values(tmp_path):
    env: dict = {}
    assert load_local_settings(tmp_path / "nope.json", env) == {} and env == {}
    assert load_local_settings(write(tmp_path / "s.json", {"Host": {}}), env) == {}


def test_bom_is_accepted(tmp_path):
    env: dict = {}
    load_local_settings(write(tmp_path / "s.json", {"Values": {"X": "1"}}, "utf-8-sig"), env)
    assert env == {"X": "1"}


@pytest.mark.parametrize("content", ["{not json", "[]", '{"Values": "x"}', '{"IsEncrypted": true, "Values": {}}'])
def test_bad_files(tmp_path, content):
    with pytest.raises(SettingsError):
        load_local_settings(write(tmp_path / "s.json", content), {})


def test_route_prefix(tmp_path):
    assert read_route_prefix(tmp_path) == "api"  # no host.json
    write(tmp_path / "host.json", {"version": "2.0"})
    assert read_route_prefix(tmp_path) == "api"
    write(tmp_path / "host.json", {"extensions": {"http": {"routePrefix": ""}}})
    assert read_route_prefix(tmp_path) == ""
    write(tmp_path / "host.json", {"extensions": {"http": {"routePrefix": "/v1/"}}})
    assert read_route_prefix(tmp_path) == "v1"


def test_resolve_references():
    env = {"SCHEDULE": "0 */5 * * * *"}
    assert resolve_references("%SCHEDULE%", env) == "0 */5 * * * *"
    assert resolve_references("0 0 * * * *", env) == "0 0 * * * *"
    with pytest.raises(SettingsError, match="MISSING"):
        resolve_references("%MISSING%", env)
