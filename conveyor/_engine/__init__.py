"""The streaming engine: private; the public API lives in the modules above."""
