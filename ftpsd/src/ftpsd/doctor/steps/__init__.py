"""The doctor's checks, one module per group of steps, run in order by runner.py.

``session`` (steps 1-4a: connect, TLS, login), ``data`` (4b-5: passive listings, session reuse) and
``roundtrip`` (6: upload, download, delete). Steps share state through probe.Probe and transport
helpers through the transport modules, never through each other.
"""
