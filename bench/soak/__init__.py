"""``kzero bench soak``: many concurrent streams for a long time, on loopback.

It starts ``kzero serve`` as a child process and keeps ``--concurrency``
streaming chat completions in flight for ``--duration`` seconds, each with its
own deadline. It passes when:

- **errors**: no request failed (HTTP status, in-band SSE error, a stream that
  ended without ``data: [DONE]`` or without a ``finish_reason``, transport
  errors, malformed events);
- **stuck**: no request ran past ``--request_timeout``;
- **rss_growth**: the server's resident memory (VmRSS, children included) grew
  less than 5% from the median of the first samples after ``--warmup`` to the
  median of the last samples, so a slow leak shows while allocator noise and
  one-off growth during warm-up do not;
- **gauges**: once the clients have stopped, ``kzero_requests_running`` and
  ``kzero_requests_waiting`` are back to 0;
- **counters**: ``kzero_requests_total`` and the token counters moved by
  exactly what the client saw;
- **server_alive**: the server did not exit during the run.

The summary is printed; ``--json`` also writes every RSS sample and request
tally. The exit status is 1 when a criterion fails, naming it.

One module per concern: ``conversations`` (what is asked), ``client`` (one
streamed request and its outcome), ``memory`` (the server's process tree from
/proc, and the RSS growth), ``load`` (workers, sampler and progress around a
server child), ``judge`` (the criteria), ``summary`` (the printed report) and
``cli`` (arguments).
"""
