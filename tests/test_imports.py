"""The package imports torch only when a torch detector is used."""

import subprocess
import sys
import textwrap


def _run(code):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )


def test_pca_workflow_does_not_import_torch(tmp_path):
    result = _run(
        f"""
        import sys
        import numpy as np
        import anomalib_lite
        from anomalib_lite import CalibratedDetector, PCADetector, io
        X = np.random.default_rng(0).normal(size=(200, 6))
        det = CalibratedDetector(PCADetector(n_components=2)).fit(X)
        io.save(det, {str(tmp_path / "model.zip")!r})
        io.load({str(tmp_path / "model.zip")!r}).predict(X)
        images = np.random.default_rng(0).normal(size=(30, 8, 8))
        PCADetector(statistic="max", smoothing="auto").fit(images).anomaly_map(images)
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_torch_detectors_load_on_first_access():
    result = _run(
        """
        import sys
        import anomalib_lite
        assert "torch" not in sys.modules
        assert "ConvAutoencoderDetector" in dir(anomalib_lite)
        from anomalib_lite import ConvAutoencoderDetector
        assert "torch" in sys.modules
        assert ConvAutoencoderDetector.__module__ == "anomalib_lite.autoencoder"
        try:
            anomalib_lite.NoSuchDetector
        except AttributeError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "has no attribute 'NoSuchDetector'" in result.stdout
