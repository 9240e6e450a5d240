"""The prelude of every child-interpreter check that a path works without torch: importing it fails there."""

import json
import subprocess
import sys

BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, NoTorch())
"""


def run_child(script: str, *args: str) -> dict:
    """Run `script` (BLOCK_TORCH first, where torch must stay out) in a fresh interpreter; the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout)
