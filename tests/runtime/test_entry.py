"""The console scripts' Ctrl-C guard: an interrupt while a command's modules are still importing
ends as one during the run does, in one line with exit 130 and no traceback."""
import subprocess
import sys

import pytest

# A finder that raises KeyboardInterrupt when click is first imported: the interrupt lands while
# the command loads, where a Ctrl-C in its first ~100 ms lands.
INTERRUPT_WHILE_LOADING = """
import sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "click":
            raise KeyboardInterrupt

sys.meta_path.insert(0, Interrupt())
from restore.runtime import entry
entry.{}()
"""


@pytest.mark.parametrize("script, prog", [("restore", "restore"), ("restore_export", "restore-export")])
def test_ctrl_c_while_the_command_loads_is_one_line_and_exit_130(script, prog):
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_WHILE_LOADING.format(script), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (130, f"{prog}: interrupted\n")


@pytest.mark.parametrize("script", ["restore", "restore-export"])
def test_the_installed_scripts_start_through_the_guard(script):
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
