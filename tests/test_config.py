"""Config composition: layer precedence, reference values, frozen objects, errors that name key and source."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from kdgat.core.config import (
    config_hash,
    config_to_json,
    config_to_yaml,
    list_auxiliaries,
    list_models,
    list_scales,
    load_frozen_config,
    resolve_config,
)
from kdgat.core.errors import ConfigError
from kdgat.core.schema import SCHEMA_VERSION, PipelineConfig

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"


@pytest.fixture(autouse=True)
def _no_env_config_dir(monkeypatch):
    """Tests read the repository's config/ unless they say otherwise."""
    monkeypatch.delenv("KDGAT_CONFIG_DIR", raising=False)


@pytest.fixture
def cfg_dir(tmp_path, monkeypatch) -> Path:
    """A scratch copy of config/ at ./config, so error messages show 'config/...' paths."""
    target = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, target)
    monkeypatch.chdir(tmp_path)
    return target


def _defaults() -> dict:
    return yaml.safe_load((REPO_CONFIG / "defaults.yaml").read_text())


def _edit(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text()) or {}
    edit(data)
    path.write_text(yaml.safe_dump(data))


# ---------------------------------------------------------------- precedence


def test_defaults_fill_every_section_the_model_file_leaves_alone():
    cfg = resolve_config("gat", "large")
    defaults = _defaults()
    assert cfg.training.max_epochs == defaults["training"]["max_epochs"] == 300
    vgae_section = {k: v for k, v in defaults["vgae"].items() if k != "calibration_fraction"}  # 0: not written
    assert cfg.vgae.model_dump(mode="json") == vgae_section and defaults["vgae"]["calibration_fraction"] == 0
    assert cfg.dqn.model_dump(mode="json") == defaults["dqn"]


def test_model_file_overrides_defaults():
    assert _defaults()["gat"]["hidden"] == 24
    assert resolve_config("gat", "large").gat.hidden == 48


def test_auxiliary_overrides_model_file(cfg_dir):
    (cfg_dir / "auxiliaries" / "drop.yaml").write_text("gat:\n  dropout: 0.33\n")
    assert resolve_config("gat", "large", aux="drop", config_dir=cfg_dir).gat.dropout == 0.33


def test_override_beats_auxiliary():
    cfg = resolve_config("gat", "small", aux="kd_standard", overrides=["kd.alpha=0.5"])
    assert cfg.kd.alpha == 0.5
    assert cfg.kd.temperature == 4.0


def test_override_list_replaces_instead_of_merging():
    cfg = resolve_config("vgae", "large", overrides=["vgae.hidden_dims=[960,480,48]"])
    assert cfg.vgae.hidden_dims == (960, 480, 48)


def test_override_value_is_parsed_as_yaml():
    cfg = resolve_config("gat", "small", overrides=["gat.heads=8", "training.precision=16-mixed", "training.lr=1e-3"])
    assert (cfg.gat.heads, cfg.training.precision, cfg.training.lr) == (8, "16-mixed", 0.001)


# ---------------------------------------------------------------- values


def test_kd_is_none_without_kd_standard():
    cfg = resolve_config("gat", "small")
    assert cfg.kd is None
    assert cfg.auxiliaries == ()


def test_kd_standard_sets_reference_values():
    cfg = resolve_config("gat", "small", aux="kd_standard")
    assert cfg.auxiliaries == ("kd_standard",)
    assert cfg.kd.model_dump() == {
        "temperature": 4.0,
        "alpha": 0.7,
        "vgae_latent_weight": 0.5,
        "vgae_recon_weight": 0.5,
    }


REFERENCE_TABLE = {
    ("vgae", "large"): dict(hidden_dims=(480, 240, 48), latent_dim=48, heads=4, id_emb_dim=32, dropout=0.15, lr=0.002),
    ("vgae", "small"): dict(hidden_dims=(80, 40, 16), latent_dim=16, heads=1, id_emb_dim=4, dropout=0.1, lr=0.002),
    ("gat", "large"): dict(hidden=48, layers=3, heads=8, id_emb_dim=16, dropout=0.2, fc_layers=1, lr=0.003),
    ("gat", "small"): dict(hidden=24, layers=2, heads=4, id_emb_dim=8, dropout=0.1, fc_layers=2, lr=0.001),
    ("dqn", "large"): dict(hidden=576, layers=3, buffer_size=100_000, batch_size=128, target_update=100, lr=0.001),
    ("dqn", "small"): dict(hidden=160, layers=2, buffer_size=50_000, batch_size=64, target_update=50, lr=0.001),
}


@pytest.mark.parametrize(("model", "scale"), sorted(REFERENCE_TABLE))
def test_model_files_load_reference_table(model, scale):
    cfg = resolve_config(model, scale)
    section = getattr(cfg, model).model_dump()
    assert {k: section[k] for k in REFERENCE_TABLE[model, scale]} == REFERENCE_TABLE[model, scale]
    assert (cfg.model_type, cfg.scale, cfg.schema_version) == (model, scale, SCHEMA_VERSION)
    assert cfg.gat.jk_mode == "cat"


def test_common_defaults_follow_reference_and_cpu():
    cfg = resolve_config("vgae", "small")
    assert cfg.seed == 42
    assert (cfg.preprocessing.window, cfg.preprocessing.stride, cfg.preprocessing.feature_set) == (100, 100, "e4t")
    assert cfg.preprocessing.vocab_min_count == 5
    t = cfg.training
    assert (t.weight_decay, t.max_epochs, t.patience, t.gradient_clip) == (1e-4, 300, 100, 1.0)
    assert (t.precision, t.monitor) == ("32-true", "val_loss")


@pytest.mark.parametrize("key", ["training.num_workers=0", "fusion.method=dqn", "fusion.decision_threshold=0.5"])
def test_keys_that_nothing_reads_are_not_config(key):
    with pytest.raises(ConfigError, match=f"{key.split('=')[0]}: unknown key"):
        resolve_config("dqn", "small", overrides=[key])


def test_dqn_is_one_step_with_a_decaying_epsilon():
    dqn = resolve_config("dqn", "small").dqn
    assert dqn.gamma == 0.0
    assert dqn.epsilon_end < dqn.epsilon_start
    assert dqn.epsilon_start * dqn.epsilon_decay**dqn.episodes < dqn.epsilon_end
    assert (dqn.episodes, dqn.action_step, dqn.num_actions) == (500, 0.05, 21)


def test_gat_small_uses_its_own_patience_and_lr():
    small, large = resolve_config("gat", "small"), resolve_config("gat", "large")
    assert (small.effective_patience, small.effective_lr) == (50, 0.001)
    assert (large.effective_patience, large.effective_lr) == (100, 0.003)


def test_config_is_frozen():
    cfg = resolve_config("gat", "small")
    with pytest.raises(ValidationError):
        cfg.seed = 1
    with pytest.raises(ValidationError):
        cfg.gat.heads = 2


# ---------------------------------------------------------------- errors


def test_unknown_key_names_key_and_file(cfg_dir):
    _edit(cfg_dir / "models" / "gat" / "small.yaml", lambda d: d["gat"].update(hiden=32))
    with pytest.raises(ConfigError) as info:
        resolve_config("gat", "small", config_dir=cfg_dir)
    assert str(info.value) == "config/models/gat/small.yaml: gat.hiden: unknown key"


def test_a_key_given_twice_names_file_and_line(cfg_dir):
    """YAML keeps the last of two equal keys silently, so an edit to the first would do nothing."""
    small = cfg_dir / "models" / "gat" / "small.yaml"
    original = small.read_text()
    small.write_text(original + "gat:\n  dropout: 0.3\n")
    second = len(original.splitlines()) + 1  # the line of the second `gat:`
    with pytest.raises(ConfigError) as info:
        resolve_config("gat", "small", config_dir=cfg_dir)
    assert str(info.value).endswith(f"config/models/gat/small.yaml:{second}: invalid YAML: duplicate key 'gat'")


def test_a_config_file_that_is_not_utf8_names_file_and_line(cfg_dir):
    small = cfg_dir / "models" / "gat" / "small.yaml"
    small.write_bytes(small.read_bytes() + b"# caf\xe9\n")  # Latin-1, as an editor may save it
    line = small.read_bytes().count(b"\n")
    with pytest.raises(ConfigError) as info:
        resolve_config("gat", "small", config_dir=cfg_dir)
    assert str(info.value).endswith(f"config/models/gat/small.yaml:{line}: not UTF-8 text (byte 0xe9)")


def test_training_monitor_must_be_a_metric_the_model_logs():
    """An unknown name stopped the training at its first epoch with a traceback, in the run folder."""
    assert resolve_config("gat", "small", overrides=["training.monitor=val_acc"]).training.monitor == "val_acc"
    for model, name in (("gat", "bogus"), ("vgae", "val_acc")):
        with pytest.raises(ConfigError) as info:
            resolve_config(model, "small", overrides=[f"training.monitor={name}"])
        assert str(info.value).startswith(f"-O training.monitor={name}: training.monitor: a {model} run logs val_loss")
        assert str(info.value).endswith(f"not {name!r}")


def test_merge_keys_may_still_be_overridden(tmp_path):
    from kdgat.core.yamlio import load_yaml_mapping

    (tmp_path / "m.yaml").write_text("base: &b\n  a: 1\n  b: 2\nx:\n  <<: *b\n  b: 3\n")
    assert load_yaml_mapping(tmp_path / "m.yaml") == {"base": {"a": 1, "b": 2}, "x": {"a": 1, "b": 3}}
    (tmp_path / "v.yaml").write_text("=: 1\na: 2\n")  # YAML's value key, as PyYAML's safe loader reads it
    assert load_yaml_mapping(tmp_path / "v.yaml") == {"=": 1, "a": 2}


def test_wrong_type_in_file_names_key_and_file(cfg_dir):
    _edit(cfg_dir / "defaults.yaml", lambda d: d["preprocessing"].update(window="ten"))
    with pytest.raises(ConfigError, match=r"^config/defaults\.yaml: preprocessing\.window: "):
        resolve_config("gat", "small", config_dir=cfg_dir)


def test_wrong_type_override_names_key_and_option():
    with pytest.raises(ConfigError) as info:
        resolve_config("gat", "small", overrides=["gat.lr=abc"])
    assert "gat.lr" in str(info.value)
    assert "-O gat.lr=abc" in str(info.value)


def test_override_value_with_a_key_given_twice_is_refused():
    """As in a config file: PyYAML would keep the last `heads` silently."""
    with pytest.raises(ConfigError, match=r"^-O gat=\{heads: 2, heads: 4\}: invalid value: duplicate key 'heads'$"):
        resolve_config("gat", "small", overrides=["gat={heads: 2, heads: 4}"])
    assert resolve_config("gat", "small", overrides=["gat={heads: 2}"]).gat.heads == 2


def test_out_of_range_value_is_rejected():
    with pytest.raises(ConfigError, match=r"kd\.alpha"):
        resolve_config("gat", "small", aux="kd_standard", overrides=["kd.alpha=1.5"])


@pytest.mark.parametrize("bad", ["gat.heads", "=4", "gat..heads=4", ".heads=4", "gat heads=4"])
def test_malformed_override_says_expected_form(bad):
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        resolve_config("gat", "small", overrides=[bad])


@pytest.mark.parametrize(
    ("kwargs", "choices"),
    [
        (dict(model="gcn", scale="small"), "vgae, gat, dqn"),
        (dict(model="gat", scale="medium"), "large, small"),
        (dict(model="gat", scale="small", aux="kd_fancy"), "kd_standard, none"),
    ],
)
def test_unknown_name_lists_choices(kwargs, choices):
    with pytest.raises(ConfigError, match=f"choose from: {choices}"):
        resolve_config(**kwargs)


def test_override_inside_null_kd_explains():
    with pytest.raises(ConfigError, match=r"^-O kd\.alpha=0\.5: kd is null here.*kd_standard"):
        resolve_config("gat", "small", overrides=["kd.alpha=0.5"])


def test_config_file_may_not_choose_the_model(cfg_dir):
    _edit(cfg_dir / "models" / "gat" / "small.yaml", lambda d: d.update(model_type="vgae"))
    with pytest.raises(ConfigError, match=r"^config/models/gat/small\.yaml: model_type: "):
        resolve_config("gat", "small", config_dir=cfg_dir)


def test_env_var_selects_config_dir(cfg_dir, monkeypatch):
    _edit(cfg_dir / "defaults.yaml", lambda d: d.update(seed=7))
    monkeypatch.setenv("KDGAT_CONFIG_DIR", str(cfg_dir))
    assert resolve_config("gat", "small").seed == 7


def test_listing_functions():
    assert list_models() == ["vgae", "gat", "dqn", "hgb", "novelty"]
    assert list_scales() == ["large", "small"]
    assert list_auxiliaries() == ["kd_standard", "none"]


# ---------------------------------------------------------------- hash and round trip


def test_hash_is_stable_across_resolves():
    a = resolve_config("gat", "small", overrides=["gat.heads=8"])
    b = resolve_config("gat", "small", overrides=["gat.heads=8"])
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16


def test_hash_changes_when_one_override_changes():
    a = resolve_config("gat", "small", overrides=["gat.dropout=0.1"])
    b = resolve_config("gat", "small", overrides=["gat.dropout=0.15"])
    assert config_hash(a) != config_hash(b)


def test_hash_is_the_same_in_another_process():
    code = (
        "from kdgat.core.config import resolve_config, config_hash; print(config_hash(resolve_config('dqn', 'large')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == config_hash(resolve_config("dqn", "large"))


@pytest.mark.parametrize(("name", "dump"), [("config.json", config_to_json), ("config.yaml", config_to_yaml)])
def test_load_frozen_config_round_trip(tmp_path, name, dump):
    cfg = resolve_config("vgae", "small", aux="kd_standard", overrides=["training.batch_size=64"])
    path = tmp_path / name
    path.write_text(dump(cfg))
    again = load_frozen_config(path)
    assert isinstance(again, PipelineConfig)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)


def test_load_frozen_config_validates_and_names_file(tmp_path):
    data = json.loads(config_to_json(resolve_config("gat", "small")))
    data["gat"]["heads"] = "eight"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config\.json: gat\.heads: "):
        load_frozen_config(path)


def recorded_run_configs() -> dict:
    """The large presets' config.json of every model kind as commit 7e0a145 wrote them (before gat.id_input
    and the novelty section existed), each with the config_hash that version recorded."""
    return json.loads((Path(__file__).parent / "support" / "run_configs_7e0a145.json").read_text())


def test_run_configs_of_an_earlier_version_load_and_hash_as_recorded(tmp_path):
    """Keys added since (gat.id_input, the novelty section) must not change an earlier run's identity."""
    from kdgat.core.config import config_hash, load_frozen_config

    for model, run in recorded_run_configs().items():
        (tmp_path / "config.json").write_text(json.dumps(run["config"], indent=2))
        earlier = load_frozen_config(tmp_path / "config.json")
        assert earlier.novelty is None and config_hash(earlier) == run["config_hash"], model


def test_gat_id_input_added_later_leaves_earlier_run_hashes_alone(tmp_path):
    """Runs recorded before gat.id_input existed had the study's embedding: their config.json has no such key,
    reads back as the embedding, and keeps its hash; the zscore default is written out."""
    from kdgat.core.config import config_hash, config_to_json, load_frozen_config

    default = resolve_config("gat", "small")
    assert default.gat.id_input == "zscore" and default.model_dump(mode="json")["gat"]["id_input"] == "zscore"
    study = resolve_config("gat", "small", overrides=["gat.id_input=embedding"])
    dumped = study.model_dump(mode="json")
    assert "id_input" not in dumped["gat"] and config_hash(study) != config_hash(default)
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(recorded_run_configs()["gat"]["config"]))  # written before the key existed
    assert load_frozen_config(earlier).gat.id_input == "embedding"
    for cfg in (default, study):  # a config.json written by a run reads back as the same config
        path = tmp_path / f"{cfg.gat.id_input}.json"
        path.write_text(config_to_json(cfg))
        again = load_frozen_config(path)
        assert again == cfg and config_hash(again) == config_hash(cfg)


def test_vgae_calibration_fraction_is_a_vgae_run_setting(tmp_path):
    """vgae.calibration_fraction (default 0: on the training windows, as before the key) is kept by VGAE runs only, so
    a GAT or fuse run hashes as before it; a VGAE run recorded before it reads back as 0 with its hash."""
    from kdgat.core.config import config_hash, config_to_json, config_to_yaml, load_frozen_config

    vgae = resolve_config("vgae", "small", overrides=["vgae.calibration_fraction=0.1"])
    assert vgae.model_dump(mode="json")["vgae"]["calibration_fraction"] == 0.1
    earlier = resolve_config("vgae", "small")
    assert "calibration_fraction" not in earlier.model_dump(mode="json")["vgae"]
    assert config_hash(earlier) != config_hash(vgae) and "calibration_fraction: 0.0" in config_to_yaml(earlier)
    recorded = tmp_path / "recorded.json"
    recorded.write_text(json.dumps(recorded_run_configs()["vgae"]["config"]))
    assert load_frozen_config(recorded).vgae.calibration_fraction == 0.0
    for kind in ("gat", "dqn", "hgb"):
        cfg, other = (resolve_config(kind, "small", overrides=[f"vgae.calibration_fraction={v}"]) for v in (0.3, 0))
        assert cfg.vgae.calibration_fraction == 0.0 and config_hash(cfg) == config_hash(other), kind
        assert "calibration_fraction" not in config_to_yaml(cfg)
    path = tmp_path / "config.json"
    path.write_text(config_to_json(vgae))
    assert load_frozen_config(path) == vgae
    with pytest.raises(ConfigError, match="calibration_fraction"):
        resolve_config("vgae", "small", overrides=["vgae.calibration_fraction=1"])


def test_fusion_novel_alert_is_a_fuse_run_setting(tmp_path):
    """fusion.novel_alert (default on) is kept by fuse runs only: a model run's config, and so its hash and the
    pipeline's step key, is what it was before the key existed, whatever the setting; off, a fuse run's config
    is that of a run made before it (which scored without the rule)."""
    from kdgat.core.config import config_hash, config_to_json, config_to_yaml, load_frozen_config

    fuse = resolve_config("dqn", "small")
    assert fuse.fusion.novel_alert and fuse.model_dump(mode="json")["fusion"]["novel_alert"] is True
    off = resolve_config("dqn", "small", overrides=["fusion.novel_alert=false"])
    assert "novel_alert" not in off.model_dump(mode="json")["fusion"] and config_hash(off) != config_hash(fuse)
    for kind in ("vgae", "gat", "hgb"):
        on, plain = (resolve_config(kind, "small", overrides=[f"fusion.novel_alert={v}"]) for v in ("true", "false"))
        assert not on.fusion.novel_alert and config_hash(on) == config_hash(plain), kind
    path = tmp_path / "config.json"
    path.write_text(config_to_json(fuse))
    again = load_frozen_config(path)
    assert again == fuse and again.fusion.novel_alert
    shown = tmp_path / "config.yaml"  # `kdgat config show`: every value in effect, the left-out one too
    shown.write_text(config_to_yaml(off))
    assert "novel_alert: false" in shown.read_text() and load_frozen_config(shown) == off
    assert "novel_alert" not in config_to_yaml(resolve_config("gat", "small"))  # not a GAT run's setting


def test_an_override_with_a_yaml_alias_is_refused_at_once():
    """Nested aliases in one -O value (711 characters) ran for minutes and filled 4 GB before anything was said."""
    from kdgat.core.config import resolve_config
    from kdgat.core.errors import ConfigError

    def level(i: int) -> str:  # a mapping of 9 keys, each the level below: 9^8 dotted keys under a8
        return f"a{i}: &a{i} {{" + ", ".join(f"k{k}: {'*a' + str(i - 1) if i else 1}" for k in range(9)) + "}"

    bomb = "gat.zz={" + ", ".join(level(i) for i in range(9)) + "}"
    with pytest.raises(ConfigError, match=r"a YAML alias \(\*name\) in an override: write the value out"):
        resolve_config("gat", "small", overrides=[bomb])


def test_a_window_beyond_any_use_is_refused():
    """A detector bundle may ask a stream's buffers to hold its window (one saying 2e9 asked for 60 GiB): the config
    bounds it where it is set (100,000 frames; the study's is 100)."""
    from kdgat.core.config import resolve_config
    from kdgat.core.errors import ConfigError

    assert resolve_config("gat", "small", overrides=["preprocessing.window=100000", "preprocessing.stride=1"])
    with pytest.raises(ConfigError, match="preprocessing.window: Input should be less than or equal to 100000"):
        resolve_config("gat", "small", overrides=["preprocessing.window=100001"])
