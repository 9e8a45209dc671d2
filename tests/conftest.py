import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# Models built here mostly get torch's weights ported over their initial values: the original
# threefry compiles each new 4-d random draw ~6x faster on CPU than JAX's default partitionable one
# (tests/test_support.py checks the helpers' draws under the default).
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def resnet_checkpoint_setup(tmp_path_factory):
    """The tiny ResNet (torch model, its conversion imported, the converted file in a directory),
    built once for the checkpoint tests."""
    from harness import Case, build_pair, import_source
    tmp = tmp_path_factory.mktemp("ck")
    pair = build_pair(Case("resnet.py", "resnet_tiny", {}, [((2, 3, 32, 32), "float")]))
    (tmp / "model_flax.py").write_text(pair.conversion.code)
    module = import_source(pair.conversion.code, "ck_resnet_flax")
    return pair, module, tmp


LONGEST_FIRST = ("test_real_models.py",)


def pytest_collection_modifyitems(config, items):
    """The longest test (real models, minutes) first: under `-n 2` it then runs beside the rest
    instead of after it."""
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)
