"""Each notebook in examples/ holds the same code as its script (one code cell per `# %%`
block), so that the two cannot drift apart. Running them takes a minute and (nanda_lens)
TransformerLens: not here."""
import json

import pytest

from conftest import REPO


@pytest.mark.parametrize("name", ["quickstart", "nanda_lens"])
def test_notebook_has_the_script_code(name):
    script = (REPO / "examples" / f"{name}.py").read_text()
    blocks = [block.strip("\n") for block in script.split("\n# %%\n")[1:]]
    notebook = json.loads((REPO / "examples" / f"{name}.ipynb").read_text())
    assert notebook["nbformat"] == 4
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert cells == blocks
    assert all(cell["outputs"] == [] for cell in notebook["cells"] if cell["cell_type"] == "code")
