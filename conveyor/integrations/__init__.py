"""Optional integrations, each in its own module with its own extra.

- :mod:`conveyor.integrations.progress`: a live progress display
  (``pip install 'conveyor[progress]'``, rich).
- :mod:`conveyor.integrations.otel`: OpenTelemetry traces and metrics
  (``pip install 'conveyor[otel]'``, opentelemetry-api).
- :mod:`conveyor.integrations.dask`: what conveyor asks a Dask cluster, and
  per-worker state (``pip install 'conveyor[dask]'``, distributed).

Importing this package imports no optional library; each module imports its
library when it is first used.
"""
