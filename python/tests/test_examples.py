"""examples/quickstart.ipynb holds the same code as examples/quickstart.py (one code cell per
`# %%` block), so that the two cannot drift apart. Running them takes a minute: not here."""
import json

from conftest import REPO


def test_notebook_has_the_script_code():
    script = (REPO / "examples" / "quickstart.py").read_text()
    blocks = [block.strip("\n") for block in script.split("\n# %%\n")[1:]]
    notebook = json.loads((REPO / "examples" / "quickstart.ipynb").read_text())
    assert notebook["nbformat"] == 4
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert cells == blocks
    assert all(cell["outputs"] == [] for cell in notebook["cells"] if cell["cell_type"] == "code")
