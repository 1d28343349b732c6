"""What the benchmarks and the test suite share to drive a real server from outside.

- ``process``: a server as a child process: a clean environment (no ``KZERO_*``
  from the shell), a free loopback port, a readiness wait, a stop that always
  happens, and its log.
- ``sse``: reading an OpenAI stream of Server-Sent Events, and tallying one.
- ``metrics``: scraping and reading a Prometheus ``/metrics`` page.

Only the standard library, httpx and prometheus_client: the kind e2e suite's
small environment can import ``sse`` too.
"""
