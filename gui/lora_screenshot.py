"""``main.py --screenshot OUT.png --lora-base BASE ADAPTER``: the LoRA section compared with its base, then saved.

The window's idle wait does not know the LoRA section's worker, so this waits for the section's own end signal,
scrolls the Summary to the section, and only then hands over to the usual idle wait and save.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def lora_base_screenshot(window, base: str, save: Callable[[], None], finish: Callable[[int], None]) -> None:
    """Compare the open adapter with ``base`` in its Summary's LoRA section; save when done, exit 2 on failure."""
    from gui.errors import reason
    from gui.panels.lora import LoraBox

    view = window.current_view()
    summary = view.summary_tab.get() if view is not None else None
    box = summary.findChild(LoraBox, "LoraBox") if summary is not None else None
    if box is None:
        print("error: --lora-base needs a LoRA adapter (a folder or file with lora_A / lora_B tensors)",
              file=sys.stderr)
        finish(2)
        return
    view.tabs.setCurrentWidget(view.summary_tab)
    view.splitter.setSizes([300, max(400, window.width() - 300)])  # the section's table and plot before the tree

    def ended(state: str) -> None:
        if state != "done":
            print(f"error: {reason(box.base_error, 'reading the base model') if box.base_error else state}",
                  file=sys.stderr)
            finish(2)
            return
        window.run_when_idle(scroll_and_save)

    def scroll_and_save() -> None:  # after the new plot's first layout pass: its place is known now
        from PySide6.QtCore import QPoint

        summary.widget().layout().activate()
        summary.verticalScrollBar().setValue(box.mapTo(summary.widget(), QPoint(0, 0)).y() - 8)  # the section on top
        save()

    box.sig_base_done.connect(ended)
    box.compare_with_base(base)
