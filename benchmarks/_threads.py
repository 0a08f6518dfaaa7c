"""One BLAS thread for a benchmark, set before NumPy is imported (NumPy reads it once, at load).

On a shared 2-core machine a multithreaded BLAS waits for a descheduled partner thread and
single timings jump 3-20x; with one thread the engine and its reference still use the same
BLAS, so ratios stay fair. A thread count already set in the environment is left alone.
This module imports nothing heavy, so a benchmark can import it first.
"""
import os

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread():
    if not any(var in os.environ for var in THREAD_VARS):
        for var in THREAD_VARS:
            os.environ[var] = "1"
