"""Optional integrations, each in its own module with its own extra.

- :mod:`conveyor.integrations.progress`: a live progress display
  (``pip install 'conveyor[progress]'``, rich).
- :mod:`conveyor.integrations.otel`: OpenTelemetry traces and metrics
  (``pip install 'conveyor[otel]'``, opentelemetry-api).

Importing this package imports no optional library; each module imports its
library when it is first used.
"""
