"""Run configs: number checks and the files a config is read from."""

import json
import re

import pytest

from msresnet1d.training.config import TrainConfig, load_config, parse_overrides


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
@pytest.mark.parametrize("key", ["lr", "weight_decay", "grad_clip", "momentum"])
def test_float_keys_must_be_finite(key, value):
    with pytest.raises(ValueError, match=rf"^defaults and the overrides \({key}\): {key} must be a finite number, "
                                         "got -?(inf|nan)"):
        load_config(None, parse_overrides([f"{key}={value}"]))


def test_a_bad_value_names_where_it_came_from(tmp_path):
    with pytest.raises(ValueError, match=r"^config: lr must be > 0 and at most 3\.403e\+38 \(float32's largest "
                                         r"number\), got -1"):
        TrainConfig(lr=-1)
    path = tmp_path / "a.toml"
    path.write_text("lr = -1\n")
    with pytest.raises(ValueError, match=rf"^{path}: lr must be > 0 and at most .*, got -1"):  # was "config: ..."
        load_config(path)
    with pytest.raises(ValueError, match=rf"^{path} and the overrides \(lr, epochs\): epochs must be >= 1, got 0"):
        load_config(path, {"lr": 0.1, "epochs": 0})


def test_a_run_folders_config_json_loads_with_overrides_on_top(tmp_path):
    saved = TrainConfig(name="run", lr=0.01, data={"fs": 180.0})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved.to_dict()))
    assert load_config(path) == saved
    assert load_config(path, {"threads": 1, "data.cache": False}).data == {"fs": 180.0, "cache": False}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"config file {path}: expected a JSON object of config keys, got list"):
        load_config(path)
    path.write_text("{")
    with pytest.raises(ValueError, match=f"config file {path}: not valid JSON"):
        load_config(path)
    path.write_text('{"lr": 0.1, "epochs": 2, "lr": 0.2}')  # json.loads kept the last lr without a word
    twice = "key 'lr' given twice in one JSON object: give each once$"
    with pytest.raises(ValueError, match=f"^config file {path}: not valid JSON \\(UTF-8 text\\): {twice}"):
        load_config(path)
    given = 'model_kwargs={"a": 1, "b": 2, "a": 3}'
    with pytest.raises(ValueError, match=re.escape(f"--set {given}: key 'a' given twice")):
        parse_overrides([given])
    with pytest.raises(ValueError, match=re.escape("keys 'a', 'b' given twice in one JSON object: give each once")):
        parse_overrides(['data={"b": 1, "a": 2, "b": 3, "a": 4}'])
    with pytest.raises(ValueError, match=r"^--set data=\[{60}\.\.\. \(200,000 characters\): lists or tables nested too "
                                         "deeply to read$"):
        parse_overrides(["data=" + "[" * 100_000 + "]" * 100_000])  # was a RecursionError traceback
    for name in ("config.json", "config.toml"):  # not UTF-8 (a UTF-16 file): the file named, not only the codec
        (tmp_path / name).write_bytes("lr = 0.1\n".encode("utf-16"))
        with pytest.raises(ValueError, match=rf"config file {tmp_path / name}: not valid (JSON|TOML) \(UTF-8 text\): "
                                             "'utf-8' codec can't decode"):
            load_config(tmp_path / name)
    # were a RecursionError traceback, and a ValueError naming no file
    for name, text, message in (("deep.toml", "name = " + "[" * 5000 + "]" * 5000, "lists or tables nested too deeply"),
                                ("deep.json", "[" * 100_000 + "]" * 100_000, "lists or tables nested too deeply"),
                                ("long.toml", "epochs = " + "9" * 5000, "not valid TOML .*4300 digits"),
                                ("long.json", '{"epochs": ' + "9" * 5000 + "}", "not valid JSON .*4300 digits")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=rf"^config file {re.escape(str(tmp_path / name))}: {message}"):
            load_config(tmp_path / name)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}"])
def test_a_config_file_that_sets_nothing_is_refused(tmp_path, text):
    path = tmp_path / ("config.json" if text == "{}" else "config.toml")
    path.write_text(text)
    with pytest.raises(ValueError, match=f"config file {path} sets no keys; leave out the config"):
        load_config(path, {"epochs": 1})  # trained on the defaults without a word before


def test_a_table_override_replaces_the_files_table_and_dotted_keys_land_on_top(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[data]\ndata_dir = "file-data"\ntrain_records = ["101"]\n\n[model_kwargs]\nkernels = [3, 5]\n')
    for order in (["data.data_dir=/given", "data={\"fs\": 180}"], ["data={\"fs\": 180}", "data.data_dir=/given"]):
        cfg = load_config(path, parse_overrides(order))  # --data-dir comes first on the command line
        assert cfg.data == {"fs": 180, "data_dir": "/given"}  # the file's table replaced; the dotted key kept
    cfg = load_config(path, parse_overrides(['model_kwargs={"widths": [8, 16]}', "model_kwargs.layers=[1, 1]"]))
    assert cfg.model_kwargs == {"widths": [8, 16], "layers": [1, 1]}  # another model's options, not kernels
    for given in (["data.fs=360", 'data={"fs": 180}'], ['data={"fs": 180}', "data.fs=360"],
                  ['data={"spectrogram": {"size": 8}}', 'data.spectrogram={"size": 16}']):
        with pytest.raises(ValueError, match=r"^override 'data\.(fs|spectrogram\.size)' given twice, as .* and .*: "
                                             "give it once$"):
            load_config(path, parse_overrides(given))
    assert load_config(path, parse_overrides(["data.fs=180", 'data={"fs": 180}'])).data == {"fs": 180}  # agreeing


@pytest.mark.parametrize("name, text", [("a.toml", "lr = 0.1\n"), ("config.json", '{"lr": 0.1}')])
def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path, name, text):
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())  # UTF-8 with BOM, as Windows Notepad saves it
    assert load_config(tmp_path / name).lr == 0.1


def test_overrides_are_not_changed_by_loading_them():  # a script passes one table to every fold's config
    common = parse_overrides(['data={"fs": 360}']) | {"data.data_dir": "/a"}
    assert load_config(None, common).data == {"fs": 360, "data_dir": "/a"}
    assert common["data"] == {"fs": 360}
    assert load_config(None, {**common, "data.data_dir": "/b"}).data == {"fs": 360, "data_dir": "/b"}
    with pytest.raises(ValueError, match=r"^override 'data\.fs' sets an entry of data, which is 5, not a table$"):
        load_config(None, {"data": 5, "data.fs": 360})  # was a raw TypeError


def test_a_dotted_key_sets_an_entry_of_a_table_within_and_no_override_is_dropped(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('[data]\nrepresentation = "spectrogram"\n\n[data.spectrogram]\nsize = 16\noverlap = 0.5\n')
    cfg = load_config(path, parse_overrides(["data.spectrogram.size=64"]))  # was stored as a key 'spectrogram.size'
    assert cfg.data == {"representation": "spectrogram", "spectrogram": {"size": 64, "overlap": 0.5}}
    for given in (['data={"spectrogram": {"overlap": 0.5}}', 'data.spectrogram={"size": 8}'],
                  ['model_kwargs={"a": {"b": 1}}', 'model_kwargs.a={"c": 2}']):  # the first's entry was dropped
        with pytest.raises(ValueError, match=r"^override '(data\.spectrogram\.overlap|model_kwargs\.a\.b)' is dropped "
                                             r"by the table another override gives its (data\.spectrogram|"
                                             r"model_kwargs\.a): give that table's entries as dotted keys instead$"):
            load_config(None, parse_overrides(given))
    both = load_config(None, parse_overrides(['data={"spectrogram": {"overlap": 0.5}}', "data.spectrogram.size=8"]))
    assert both.data == {"spectrogram": {"overlap": 0.5, "size": 8}}
    for given in (['data.spectrogram={"overlap": 0.5}', "data.spectrogram.size=8"],
                  ["data.spectrogram.size=8", 'data.spectrogram={"overlap": 0.5}']):  # either order (was refused)
        assert load_config(None, parse_overrides(given)).data == {"spectrogram": {"overlap": 0.5, "size": 8}}
    assert load_config(None, {"data": {}, "data.fs": 180}).data == {"fs": 180}  # an empty table is kept as a table
    with pytest.raises(ValueError, match=r"^override 'data\.fs\.x' sets an entry of data\.fs, which is 180, not a "
                                         "table$"):
        load_config(None, {"data.fs": 180, "data.fs.x": 1})
    # 'data..fs' was a key '' of data (an unknown key '' later); '.fs' and 'data.' other errors
    for key in ("data..fs", ".fs", "data.", "data. .fs"):
        with pytest.raises(ValueError, match=rf"^override '{re.escape(key)}': an empty name before, between or after "
                                             r"its dots; a dotted key names a table's entry, e.g\. data\.fs$"):
            load_config(None, parse_overrides([f"{key}=180"]))


@pytest.mark.parametrize("threads", [1025, 100_000, 99999999999999999999])  # torch ran out of memory, or overflowed
def test_threads_above_1024_are_refused_naming_the_key(threads):
    assert load_config(None, {"threads": 1024}).threads == 1024
    with pytest.raises(ValueError, match=rf"^defaults and the overrides \(threads\): threads must be at most 1024, "
                                         rf"got {threads}$"):
        load_config(None, parse_overrides([f"threads={threads}"]))
