import json
import textwrap

import pytest
import torch
from conftest import run_python, tiny_config
from transformers import AutoModel

import multitask_st
from multitask_st import MultiTaskSTConfig, MultiTaskSTModel


def test_every_public_name_resolves():
    assert set(multitask_st.__all__) == {"MultiTaskSTConfig", "__version__", *multitask_st._LAZY_IMPORTS}
    for name in multitask_st.__all__:
        assert getattr(multitask_st, name) is not None, name
        assert name in dir(multitask_st)
    with pytest.raises(AttributeError, match="has no attribute 'MultiTaskModel'"):
        multitask_st.MultiTaskModel  # noqa: B018


def test_auto_model_builds_and_loads_the_registered_class(tmp_path):
    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config())
    assert type(model) is MultiTaskSTModel
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is MultiTaskSTModel
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_import_is_lazy_and_auto_classes_still_work(tmp_path):
    """`import multitask_st` imports neither the model code nor training, data or sharing; AutoModel still works."""
    script = textwrap.dedent(
        f"""
        import json, sys
        import multitask_st
        assert not [name for name in sys.modules if name.startswith(("multitask_st.", "transformers", "torch"))]
        from transformers import AutoConfig, AutoModel

        loaded = sorted(name for name in sys.modules if name.startswith("multitask_st."))
        heavy = sorted(name for name in ("transformers.modeling_utils", "datasets", "evaluate") if name in sys.modules)
        config = AutoConfig.for_model(
            "multitask-st", tasks={{"a": ["x", "y"]}},
            backbone_config={{"model_type": "bert", "vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 1,
                              "num_attention_heads": 4, "intermediate_size": 37}},
        )
        model = AutoModel.from_config(config)
        model.save_pretrained({str(tmp_path)!r})
        reloaded = AutoModel.from_pretrained({str(tmp_path)!r})
        json.dump({{
            "loaded": loaded, "heavy": heavy, "config": type(config).__name__,
            "model": type(model).__module__ + "." + type(model).__name__, "reloaded": type(reloaded).__name__,
            "registered": AutoModel._model_mapping[type(config)].__name__,
        }}, sys.stdout)
        """
    )
    run = run_python(script, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [
        "multitask_st.configuration_multitask_st",
        "multitask_st.inference_multitask_st",
        "multitask_st.scores_multitask_st",
        "multitask_st.task_fields_multitask_st",
    ]
    assert report["heavy"] == []
    assert report["config"] == MultiTaskSTConfig.__name__
    assert report["model"] == "multitask_st.modeling_multitask_st.MultiTaskSTModel"
    assert report["reloaded"] == report["registered"] == "MultiTaskSTModel"  # the stand-in handed over
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_multitask_st.MultiTaskSTConfig",
        "AutoModel": "modeling_multitask_st.MultiTaskSTModel",
    }


def test_payload_files_form_no_import_circle_and_are_the_declared_list():
    """The files `save_pretrained` copies import each other one way only (relative imports, `from .x import`, anywhere
    in the file, as transformers' remote-code loader reads them), and `PAYLOAD_FILES` names exactly them."""
    import re
    from pathlib import Path

    from multitask_st.inference_multitask_st import PAYLOAD_FILES

    package = Path(multitask_st.__file__).parent
    files = sorted(path.name for path in package.glob("*_multitask_st.py"))
    assert sorted(PAYLOAD_FILES) == files
    imports = {
        name: set(re.findall(r"^\s*from\s+\.(\w+)\s+import", (package / name).read_text(), flags=re.MULTILINE))
        for name in files
    }
    for name, targets in imports.items():
        assert {target + ".py" for target in targets} <= set(files), name  # payload imports payload only
    visiting, done = [], set()

    def visit(name):
        assert name not in visiting, f"import circle: {' -> '.join([*visiting, name])}"
        if name in done:
            return
        visiting.append(name)
        for target in imports[name]:
            visit(target + ".py")
        visiting.pop()
        done.add(name)

    for name in files:
        visit(name)
    assert not imports["inference_multitask_st.py"]  # the engine imports no other payload file (numpy only)


@pytest.mark.parametrize(
    "first",
    [
        "import multitask_st",
        "import multitask_st; from multitask_st import MultiTaskSTConfig",
        "import multitask_st; from transformers import AutoModel",
        "from transformers import AutoModel; import multitask_st",
        "from multitask_st.configuration_multitask_st import MultiTaskSTConfig",
        "from multitask_st.export.onnx_runtime import MultiTaskSTOnnxModel",
    ],
)
def test_registration_holds_whatever_is_imported_first(first, tmp_path):
    """The registration waits for transformers' auto classes (a post-import hook): any import order registers both
    auto classes, without a warning, and AutoConfig builds the config by its model type."""
    script = textwrap.dedent(
        f"""
        {first}
        import multitask_st
        from transformers import AutoConfig, AutoModel
        config = AutoConfig.for_model("multitask-st", tasks={{"a": ["x", "y"]}})
        print(type(config).__name__, AutoModel._model_mapping[type(config)].__name__)
        """
    )
    run = run_python(script, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "could not register" not in run.stderr
    assert run.stdout.split() == ["MultiTaskSTConfig", "_MultiTaskSTModelStandIn"]
