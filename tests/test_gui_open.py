"""Opening models in the window: drop, FileOpen, recent files, refused files, settings isolation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QMimeData, QPointF, QSettings, QStandardPaths, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFileOpenEvent
from PySide6.QtWidgets import QApplication

from tests.conftest import write_llama
from tests.corpus import CORPUS

REPO = Path(__file__).resolve().parents[1]


def drop(widget, paths: list[Path]) -> bool:
    """A real drag-enter + drop of file URLs onto ``widget``, as the window system delivers it."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    event = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier, QEvent.Type.Drop)
    QApplication.sendEvent(widget, event)
    return enter.isAccepted() and event.isAccepted()


def test_welcome_page_offers_every_way_in(make_window):
    window = make_window()
    assert window.stack.currentWidget() is window.welcome
    names = {b.objectName() for b in (window.welcome.open_file, window.welcome.open_folder,
                                      window.welcome.open_sample)}
    assert names == {"welcome_open_file", "welcome_open_folder", "welcome_open_sample"}
    assert "Drop a checkpoint" in window.welcome.drop_zone.text()
    menus = {a.objectName() for a in window.findChildren(type(window.action_open_file)) if a.objectName()}
    assert {"action_open_file", "action_open_folder", "action_open_sample", "action_export_report",
            "action_close_tab", "action_quit", "action_legend", "action_about"} <= menus


def test_drop_of_a_file_opens_it_in_a_tab(make_window, qtbot, tiny_llama):
    path, tensors = tiny_llama
    window = make_window()
    assert drop(window, [path])
    qtbot.waitUntil(lambda: window.tabs.count() == 1, timeout=20000)
    view = window.current_view()
    assert view.checkpoint.parameter_count == sum(a.size for a in tensors.values())
    assert window.stack.currentWidget() is window.tabs
    assert window.tabs.tabText(0) == "tiny-llama"  # a generic file name: the folder names the model
    qtbot.waitUntil(window.is_idle, timeout=30000)


def test_drop_of_a_folder_onto_an_open_tab_opens_another(make_window, qtbot, open_model, tiny_llama, tmp_path):
    path, _ = tiny_llama
    window = make_window()
    open_model(window, path)
    folder = tmp_path / "second"
    write_llama(folder, layers=2, seed=3)
    assert drop(window.current_view().tree.viewport(), [folder])  # any part of the window takes drops
    qtbot.waitUntil(lambda: window.tabs.count() == 2, timeout=20000)
    assert window.current_view().title == "second"
    qtbot.waitUntil(window.is_idle, timeout=30000)


def test_opening_the_same_model_twice_reuses_its_tab(make_window, open_model, tiny_llama):
    path, _ = tiny_llama
    window = make_window()
    first = open_model(window, path)
    window.open_paths([str(path)])
    assert window.tabs.count() == 1 and window.current_view() is first


def test_hostile_file_shows_the_reason_and_opens_nothing(make_window, qtbot, dialogs, open_model, tiny_llama):
    hostile = CORPUS / "hostile" / "picklescan-malicious0.pkl"
    window = make_window()
    with qtbot.waitSignal(window.sig_open_failed, timeout=20000):
        window.open_paths([str(hostile)])
    assert window.tabs.count() == 0
    assert len(dialogs) == 1
    assert dialogs[0]["text"] and "\n" not in dialogs[0]["text"]
    assert str(hostile) in dialogs[0]["details"]
    assert window.stack.currentWidget() is window.welcome
    open_model(window, tiny_llama[0])  # the app carries on
    assert window.tabs.count() == 1


def test_missing_path_is_refused_with_a_dialog(make_window, qtbot, dialogs, tmp_path):
    window = make_window()
    with qtbot.waitSignal(window.sig_open_failed, timeout=10000):
        window.open_paths([str(tmp_path / "nope.safetensors")])
    assert "no such file" in dialogs[0]["text"]
    assert window.tabs.count() == 0


def test_file_open_events_wait_for_the_window(qapp, make_window, qtbot, tiny_llama):
    path, _ = tiny_llama
    qapp.set_opener(None)
    QApplication.sendEvent(qapp, QFileOpenEvent(str(path)))
    assert qapp.pending_paths == [str(path)]
    window = make_window()
    qapp.set_opener(window.open_paths)
    try:
        assert qapp.pending_paths == []
        qtbot.waitUntil(lambda: window.tabs.count() == 1, timeout=20000)
        qtbot.waitUntil(window.is_idle, timeout=30000)
    finally:
        qapp.set_opener(None)


def test_recent_files_are_deduplicated_capped_and_pruned(make_window, open_model, tmp_path, settings):
    from gui import recent

    existing = []
    for i in range(17):
        p = tmp_path / f"m{i}.safetensors"
        p.write_bytes(b"x")
        existing.append(p)
    for p in existing:
        recent.add_recent(str(p))
    recent.add_recent(str(existing[3]))  # again: moves to the front, not duplicated
    paths = recent.recent_paths()
    assert len(paths) == recent.LIMIT == 15
    assert paths[0] == str(existing[3])
    assert len(set(paths)) == len(paths)
    os.remove(existing[16])
    assert str(existing[16]) not in recent.recent_paths()

    window = make_window()
    window._fill_recent_menu()
    shown = [a.data() for a in window.menu_recent.actions()]
    assert shown == recent.recent_paths()
    assert window.welcome.recent.count() == len(recent.recent_paths())


def test_opening_adds_to_recent_and_the_menu_reopens(make_window, qtbot, open_model, tiny_llama):
    path, _ = tiny_llama
    window = make_window()
    open_model(window, path)
    from gui.recent import recent_paths

    assert recent_paths()[0] == str(path)
    window.close_current_tab()
    assert window.tabs.count() == 0 and window.stack.currentWidget() is window.welcome
    window._fill_recent_menu()
    window.menu_recent.actions()[0].trigger()
    qtbot.waitUntil(lambda: window.tabs.count() == 1, timeout=20000)
    qtbot.waitUntil(window.is_idle, timeout=30000)


def test_settings_are_isolated_from_the_user(settings):
    from tests.conftest import SETTINGS_DIR

    assert QStandardPaths.isTestModeEnabled()
    assert QSettings().fileName().startswith(SETTINGS_DIR)
    assert not QSettings().fileName().startswith(os.path.expanduser("~/.config"))
    from gui.settings_dialog import analysis_device, set_analysis_device

    assert analysis_device() == "auto"
    set_analysis_device("cpu")
    assert analysis_device() == "cpu"
    with pytest.raises(ValueError):
        set_analysis_device("tpu")


def test_settings_dialog_saves_the_device(make_window, settings):
    from gui.settings_dialog import SettingsDialog, analysis_device

    window = make_window()
    dialog = SettingsDialog(window)
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.accept()
    assert analysis_device() == "cpu"
    window._update_status()
    assert window.device_label.text() == "Device: cpu"


@pytest.mark.slow
def test_window_appears_before_torch_is_imported():
    code = ("import sys; from gui.app import get_app; from gui.main_window import MainWindow; app = get_app(); "
            "w = MainWindow(interactive=False); w.show(); app.processEvents(); "
            "print('visible', w.isVisible(), 'torch', 'torch' in sys.modules); w.close()")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert "visible True torch False" in out.stdout, out.stderr
