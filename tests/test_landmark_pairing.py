"""Landmark pairing rules (core/landmarks.py), independent of any widget."""

from __future__ import annotations

from napari_ablation.core import landmarks as lm


def test_next_label_is_the_oldest_waiting_pair_else_a_new_number():
    assert lm.next_pair_label([], []) == "1"
    assert lm.next_pair_label(["1", "2"], []) == "3"
    assert lm.next_pair_label([], ["1", "2"]) == "1"  # post waits for pre's pair 1 first
    assert lm.next_pair_label(["1"], ["1", "2", "3"]) == "2"
    assert lm.next_pair_label(["1", "2"], ["1", "2"]) == "3"
    assert lm.next_pair_label(["cyst"], ["cyst", "7"]) == "7"
    assert lm.next_pair_label(["cyst"], ["cyst"]) == "1"  # non-numeric labels do not count


def test_settle_makes_clicked_labels_unique_and_set():
    # napari gives every clicked point the same default label: the second becomes the next pair
    assert lm.settle_labels(["1", "1"], ["1", "2", "3"]) == ["1", "2"]
    assert lm.settle_labels(["1", "nan", ""], []) == ["1", "2", "3"]
    assert lm.settle_labels(["2", "1"], ["1", "2"]) == ["2", "1"]  # already fine: unchanged
