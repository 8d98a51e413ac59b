"""Running the example and benchmark scripts inside a test: imported as modules (they are not a
package), and their argument refusals read back — one line on stderr, exit code 2, no traceback."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path: str):
    """An example or benchmark script imported as a module (they are not a package)."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refusal(main, argv, capsys) -> str:
    """Run ``main(argv)``, expect argparse's exit code 2, and return its single stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err
