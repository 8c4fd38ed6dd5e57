"""verify's parts that need no CenterNet tree: comparisons, inputs, error messages."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from patcher.errors import UsageError
from patcher.verify import (Tolerance, compare_detections, compare_head, preprocess,
                            random_inputs, read_image, verify)

TOL = Tolerance(atol=1e-3, rtol=1e-3)


def test_compare_head_reports_max_errors_and_applies_the_tolerance():
    reference = np.array([[1.0, -2.0, 100.0]], np.float32)
    close = compare_head("hm", reference + np.array([[5e-4, 0, 0.05]], np.float32), reference, TOL)
    assert close.passed and close.max_abs == pytest.approx(0.05, rel=1e-3)
    assert close.max_rel == pytest.approx(0.05 / (100 + 1e-3), rel=1e-3)
    far = compare_head("hm", reference + np.array([[2.5e-3, 0, 0]], np.float32), reference, TOL)  # > 1e-3 + 1e-3 * 1
    assert not far.passed and far.max_abs == pytest.approx(2.5e-3, rel=1e-3)
    nan = compare_head("hm", np.full_like(reference, np.nan), reference, TOL)
    assert not nan.passed


def _decoded(keys, scores, rows=None):
    """One image's decoder output: keys are (class, position) pairs in rank order."""
    classes = np.array([[k[0] for k in keys]])
    indices = np.array([[k[1] for k in keys]])
    scores = np.array([scores], np.float32)
    rows = np.array([rows if rows is not None else [[s, float(i)] for s, (_, i) in zip(scores[0], keys)]],
                    np.float32)
    return {"classes": classes, "indices": indices, "scores": scores, "detections": rows}


def test_identical_detections_match():
    side = _decoded([(0, 5), (1, 9), (0, 2)], [0.9, 0.5, 0.1])
    result = compare_detections(side, side, TOL)
    assert result.passed and result.compared == 3 and result.unmatched == 0


def test_near_equal_scores_may_swap_ranks():
    torch_side = _decoded([(0, 5), (1, 9), (0, 2)], [0.9, 0.5000001, 0.5])
    onnx_side = _decoded([(0, 5), (0, 2), (1, 9)], [0.9, 0.5000002, 0.5000001])
    assert compare_detections(torch_side, onnx_side, TOL).passed


def test_a_different_detection_above_the_cut_fails():
    torch_side = _decoded([(0, 5), (1, 9), (0, 2)], [0.9, 0.5, 0.1])
    onnx_side = _decoded([(0, 5), (1, 8), (0, 2)], [0.9, 0.5, 0.1])
    result = compare_detections(torch_side, onnx_side, TOL)
    assert not result.passed and result.unmatched == 2 and result.compared == 2


def test_ties_at_the_cut_are_accepted_but_counted():
    # suppressed peaks are exactly 0: which zero makes the top-k is arbitrary
    torch_side = _decoded([(0, 5), (0, 7), (0, 8)], [0.9, 0.0, 0.0])
    onnx_side = _decoded([(0, 5), (0, 3), (0, 7)], [0.9, 0.0, 0.0])
    result = compare_detections(torch_side, onnx_side, TOL)
    assert result.passed and result.tie_band == 2 and result.compared == 2


def test_a_field_beyond_tolerance_fails():
    keys = [(0, 5), (1, 9)]
    torch_side = _decoded(keys, [0.9, 0.5], rows=[[10.0, 20.0], [30.0, 40.0]])
    onnx_side = _decoded(keys, [0.9, 0.5], rows=[[10.0, 20.0], [30.0, 40.5]])
    result = compare_detections(torch_side, onnx_side, TOL)
    assert not result.passed and result.mismatched_rows == 1 and result.max_abs == pytest.approx(0.5)


MEAN, STD = [0.4, 0.45, 0.5], [0.25, 0.25, 0.3]


def test_preprocess_same_size_is_normalisation_only():
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    # ctdet scales by the longer side: 96 -> 96 is the identity for a 64x96 input
    out = preprocess(image, task="ctdet", input_size=(64, 96), mean=MEAN, std=STD)
    expected = ((image / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(2, 0, 1)
    assert out.dtype == np.float32 and out.shape == (3, 64, 96)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_preprocess_scales_around_the_centre_and_pads_with_zero():
    image = np.full((50, 200, 3), 255, np.uint8)  # wide image
    out = preprocess(image, task="ddd", input_size=(64, 128), mean=MEAN, std=STD)
    # scale 128/200: the image covers rows 32 +- 16; the rest is black padding
    white = (1.0 - np.array(MEAN)) / np.array(STD)
    black = (0.0 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(out[:, 32, 64], white, atol=1e-5)
    np.testing.assert_allclose(out[:, 5, 64], black, atol=1e-5)
    np.testing.assert_allclose(out[:, 60, 10], black, atol=1e-5)


def test_read_image_npy_and_ppm(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ppm = tmp_path / "img.ppm"
    ppm.write_bytes(b"P6\n# a comment\n7 5\n255\n" + rgb.tobytes())
    np.testing.assert_array_equal(read_image(ppm), rgb[:, :, ::-1])  # BGR, as cv2.imread
    np.save(tmp_path / "img.npy", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "img.npy"), rgb)
    np.save(tmp_path / "bad.npy", rgb.astype(np.float32))
    with pytest.raises(UsageError, match="uint8"):
        read_image(tmp_path / "bad.npy")
    (tmp_path / "short.ppm").write_bytes(b"P6 7 5 255\n" + rgb.tobytes()[:20])
    with pytest.raises(UsageError, match="truncated"):
        read_image(tmp_path / "short.ppm")
    (tmp_path / "img.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(UsageError, match="unsupported format '.jpg'"):
        read_image(tmp_path / "img.jpg")
    with pytest.raises(UsageError, match="no such file"):
        read_image(tmp_path / "absent.npy")


def test_random_inputs_are_seeded():
    np.testing.assert_array_equal(random_inputs(3, 2, (8, 8)), random_inputs(3, 2, (8, 8)))
    assert not np.array_equal(random_inputs(3, 1, (8, 8)), random_inputs(4, 1, (8, 8)))


def test_verify_refuses_models_it_cannot_rebuild(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        verify(tmp_path / "absent.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not protobuf at all")
    with pytest.raises(UsageError, match="not a readable ONNX file"):
        verify(tmp_path / "broken.onnx")
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["hm"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("hm", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    with pytest.raises(UsageError, match="carries no centernet-patch metadata"):
        verify(tmp_path / "foreign.onnx")
    with pytest.raises(UsageError, match="runtime 'cuda'"):
        verify(tmp_path / "foreign.onnx", runtime="cuda")
