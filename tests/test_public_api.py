"""`import bicross` is cheap and exposes the documented names."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light():
    code = "import sys, bicross; print('torch' in sys.modules, 'transformers' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


def test_every_public_name_resolves():
    import bicross

    for name in bicross.__all__:
        assert getattr(bicross, name) is not None, name
    assert bicross.__all__ == sorted(bicross.__all__)
