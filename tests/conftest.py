"""Test-wide setup: 8 forced CPU devices, so data-parallel code is exercised on CI."""

import os

# Must be set before jax is first imported anywhere in the test process.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
