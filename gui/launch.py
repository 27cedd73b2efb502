"""Start the desktop app: ``main.py [--screenshot OUT.png] [--select NAME] [--size WxH] [PATH...]``.

The window is shown before anything heavy is imported: torch loads only when
the first analysis starts, inside a worker. ``--screenshot`` runs offscreen,
waits until opening and the whole-model analysis are done, optionally selects
a tensor, saves the window as a PNG and exits (2 with ``error: ...`` on stderr
when a path is refused). Before Qt starts, a missing display or a missing system
library of Qt's xcb plugin is reported in one line (exit 2) instead of Qt's abort.
``--quit-after-shown`` lets a smoke test start the real window and see it quit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys

SCREENSHOT_TIMEOUT_MS = 600_000


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="main.py", description="Open checkpoints in the Weightscope window.")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="checkpoint files, index files or model folders")
    parser.add_argument("--screenshot", metavar="OUT.png", help="render the window offscreen to a PNG and exit")
    parser.add_argument("--select", metavar="NAME", help="with --screenshot: the tensor (or tree path) to select")
    parser.add_argument("--size", default="1400x900", metavar="WxH", help="with --screenshot: window size")
    parser.add_argument("--tab", choices=["summary", "distribution", "depth", "heatmap", "memory", "findings",
                                          "spectra", "compare"], help="with --screenshot: the panel to show")
    parser.add_argument("--compare", metavar="B", help="compare the (first) model with model B in its Compare tab "
                        "(with --screenshot: wait for the comparison to finish)")
    parser.add_argument("--lora-base", metavar="BASE",
                        help="with --screenshot: compare the (LoRA adapter) model with its base model BASE in the "
                             "Summary's LoRA section, and wait for it")
    parser.add_argument("--scope", choices=["matrices", "all", "roles"],
                        help="with --screenshot: a group's histogram of its weight matrices (the default), all "
                             "values, or one per role")
    parser.add_argument("--compare-memory", nargs="+", metavar="MODEL",
                        help="open the side-by-side memory view of these open paths or reference model names "
                             "(with --screenshot: screenshot that view)")
    parser.add_argument("--quit-after-shown", type=float, metavar="SECONDS",
                        help="quit SECONDS after the window is shown and the models are open and analysed "
                             "(exit 0, or 2 if one failed): a smoke test on a real display")
    args = parser.parse_args(argv)
    from gui.references import model_path

    args.paths = [model_path(p) for p in args.paths]  # "llama-3.1-70b" names a bundled reference config
    if args.compare and not args.paths:
        parser.error("--compare needs a model to compare with B")
    match = re.fullmatch(r"(\d{2,5})x(\d{2,5})", args.size)
    if not match:
        parser.error(f"--size must look like 1400x900, not {args.size!r}")
    args.width, args.height = int(match.group(1)), int(match.group(2))
    return args


def launch(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from gui.display_check import display_problem

    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        app = _setup_app(stack)
        window = _setup_window(stack, app, interactive=not args.screenshot)
        if args.screenshot:
            return _screenshot(app, window, args)
        window.show()
        if args.paths:
            window.open_paths(args.paths)
        if args.compare:
            window.sig_model_opened.connect(lambda view: view.compare_with(args.compare) if view.compare.panel is None
                                            and view.path == os.path.abspath(args.paths[0]) else None)
        if args.compare_memory:
            window.open_memory_compare(args.compare_memory)
        if args.quit_after_shown is not None:
            _quit_when_shown_and_idle(app, window, args.quit_after_shown)
        return app.exec()
    return 0


def _quit_when_shown_and_idle(app, window, seconds: float) -> None:
    from PySide6.QtCore import QTimer

    def quit_later() -> None:
        QTimer.singleShot(int(seconds * 1000), lambda: app.exit(2 if window.errors else 0))

    window.run_when_idle(quit_later)


def _setup_app(stack: contextlib.ExitStack):
    from gui.app import WeightscopeApp, get_app

    app = get_app([sys.argv[0] if sys.argv else "weightscope"])
    if isinstance(app, WeightscopeApp):
        stack.callback(app.set_opener, None)
    return app


def _setup_window(stack: contextlib.ExitStack, app, interactive: bool):
    from gui.app import WeightscopeApp
    from gui.main_window import MainWindow

    window = MainWindow(interactive=interactive)
    stack.callback(window.deleteLater)
    stack.callback(window.close)
    if isinstance(app, WeightscopeApp):
        app.set_opener(window.open_paths)
    return window


def _screenshot(app, window, args: argparse.Namespace) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QLayout

    window.layout().setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)  # the size asked for, even if tight
    window.resize(args.width, args.height)
    window.show()
    outcome: dict[str, int] = {}

    def finish(code: int) -> None:
        outcome.setdefault("code", code)
        app.exit(code)

    def opened_all() -> None:
        if window.errors:
            for _path, exc in window.errors:
                from gui.errors import reason

                print(f"error: {reason(exc)}", file=sys.stderr)
            finish(2)
            return
        view = window.current_view()
        if view is not None and args.compare:
            view.compare_with(args.compare)
        if view is not None and args.scope:
            view.set_histogram_scope(args.scope)
        if view is not None and args.select is not None and not view.select_path(args.select):  # "": the root
            print(f"error: no tensor or tree path named {args.select!r}", file=sys.stderr)
            finish(2)
            return
        if view is not None and args.tab == "memory":
            view.tabs.setCurrentWidget(view.memory_tab)
        elif view is not None and args.tab == "findings":
            view.tabs.setCurrentWidget(view.findings_tab)
        elif view is not None and args.tab == "compare":
            if not args.compare:
                print("error: --tab compare needs --compare B", file=sys.stderr)
                finish(2)
                return
            view.tabs.setCurrentWidget(view.compare.panel)
            view.splitter.setSizes([340, max(400, args.width - 340)])  # the table's columns before the tree's
        elif view is not None and args.tab == "spectra":
            view.tabs.setCurrentWidget(view.spectra_tab)
        elif view is not None and args.tab:
            view.tabs.setCurrentIndex(["summary", "distribution", "depth", "heatmap"].index(args.tab))
        page = view.tabs.currentWidget() if view is not None else None
        if hasattr(page, "get"):
            page.get()  # a panel built when first shown: built now, so the idle wait covers its own work
        if args.compare_memory:
            from gui.memory_compare import compare_screenshot

            compare_screenshot(window, args, finish)
            return
        if args.lora_base:
            from gui.lora_screenshot import lora_base_screenshot

            lora_base_screenshot(window, args.lora_base, save, finish)
            return
        window.run_when_idle(save)

    def save() -> None:
        if args.compare and window.errors:  # B could not be compared: say why, like a model that did not open
            from gui.errors import reason

            for _path, exc in window.errors:
                print(f"error: {reason(exc)}", file=sys.stderr)
            finish(2)
            return
        app.processEvents()
        pixmap = window.grab()
        if not pixmap.save(args.screenshot, "PNG"):
            print(f"error: cannot write {args.screenshot}", file=sys.stderr)
            finish(2)
            return
        finish(0)

    def timeout() -> None:
        print("error: timed out waiting for the model to open and be analysed", file=sys.stderr)
        finish(2)

    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, timeout)
    window.open_paths(args.paths)
    window.run_when_idle(opened_all)
    app.exec()
    return outcome.get("code", 2)
