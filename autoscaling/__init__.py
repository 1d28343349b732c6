"""kzero's cost model and Knative autoscaler (KPA) simulator.

``knative/`` holds the Knative presets (YAML); the Python modules here answer
"when does self-hosted serverless beat AWS Lambda and Cloud Run?":

- ``prices``: the dated price list (``prices.yaml``), loaded and validated;
- ``cost``: cost per token and per request, self-hosted and managed, break-even rates;
- ``seed``: the seed study's scenario, reproduced to its published digits;
- ``kpa``: one KPA scaling decision, as Knative's autoscaler makes it;
- ``simulator``: a request trace replayed through the KPA, pods and activator;
- ``traces``: Poisson, bursty on/off and diurnal request traces;
- ``cost_cli`` and ``report``: the ``kzero cost`` and ``kzero report`` commands.
"""
