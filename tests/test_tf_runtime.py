"""TensorFlow's start-up notices are dropped, real native errors (a CUDA or cuDNN library failing) pass."""

import subprocess
import sys
import textwrap

from deepspeech_it.util.tf_runtime import without_startup_noise

from conftest import PROJECT_ROOT

# As TensorFlow 2.21 prints them on a machine without a GPU, and with CUDA wheels on a GPU host.
NOISE = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796215380.417208   10373 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796215380.520940   10373 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796215387.816288   10373 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1733139745.116218   12461 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered
E0000 00:00:1733139745.122377   12461 cuda_blas.cc:1418] Unable to register cuBLAS factory: Attempting to register factory for plugin cuBLAS when one has already been registered
"""
REAL = """\
W0000 00:00:1733139746.502109   12461 gpu_device.cc:2344] Cannot dlopen some GPU libraries. Please make sure the missing libraries mentioned above are installed properly if you would like to use GPU. Follow the guide at https://www.tensorflow.org/install/gpu for how to download and setup the required libraries for your platform.
E0000 00:00:1733139745.901734   12461 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display driver / cuda driver combination (803)
E0000 00:00:1733139747.012345   12461 cuda_dnn.cc:535] Could not create cudnn handle: CUDNN_STATUS_NOT_INITIALIZED
Traceback (most recent call last):
ImportError: libcudnn.so.9: cannot open shared object file: No such file or directory
"""


def test_notices_are_dropped_and_errors_kept_in_order():
    mixed = "".join(n + r for n, r in zip(NOISE.splitlines(True), REAL.splitlines(True) + [""] * 9))
    assert without_startup_noise(mixed) == REAL
    assert without_startup_noise(NOISE) == ""


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_importing_tensorflow_prints_nothing_here():
    result = _child("from deepspeech_it.util.tf_runtime import tf; print(tf.__version__)")
    assert result.returncode == 0 and result.stderr == ""


def test_native_lines_written_during_the_import_block_are_filtered_not_silenced():
    """Written to file descriptor 2 as native code writes, also when the block fails."""
    result = _child(f"""
        import os
        from deepspeech_it.util.tf_runtime import native_stderr_filtered
        try:
            with native_stderr_filtered():
                os.write(2, {(NOISE + REAL).encode()!r})
                raise ImportError("stop")
        except ImportError:
            print("raised")
    """)
    assert result.stdout.strip() == "raised"
    assert result.stderr == REAL


def test_tensor_float_32_is_off_for_the_tests_and_their_children():
    from deepspeech_it.util.tf_runtime import tf

    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    result = _child("import os; print(os.environ.get('NVIDIA_TF32_OVERRIDE'))")
    assert result.stdout.strip() == "0"
