"""``main.py --screenshot OUT.png --lora-base BASE ADAPTER``: the LoRA section compared with its base, then saved.

The window's idle wait does not know the LoRA section's worker, so this waits for the section's own end signal,
scrolls the Summary to the section once the new plot is laid out, and only then hands over to the save.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def lora_base_screenshot(window, base: str, save: Callable[[], None], finish: Callable[[int], None]) -> None:
    """Compare the open adapter with ``base`` in its Summary's LoRA section; save when done, exit 2 on failure."""
    from gui.errors import reason
    from gui.panels.lora import compare_adapter_with_base, scroll_to

    view = window.current_view()
    if view is None or getattr(view.checkpoint, "lora", None) is None:
        print("error: --lora-base needs a LoRA adapter (a folder or file with lora_A / lora_B tensors)",
              file=sys.stderr)
        finish(2)
        return
    view.splitter.setSizes([300, max(400, window.width() - 300)])  # the section's table and plot before the tree
    box = compare_adapter_with_base(view, base)

    def ended(state: str) -> None:
        if state != "done":
            why = reason(box.base_error, "reading the base model") if box.base_error is not None else state
            print(f"error: {why}", file=sys.stderr)
            finish(2)
            return
        window.run_when_idle(scroll_and_save)

    def scroll_and_save() -> None:
        scroll_to(view.summary_tab.panel, box)  # after the new plot's first layout pass: the section on top
        save()

    box.sig_base_done.connect(ended)
