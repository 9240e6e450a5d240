"""poco_rt.server: the real-time service (onnxruntime, numpy, pyzmq, FastAPI; never torch).

settings.py     ServerSettings: flags, POCO_RT_* environment, TOML file; validated at start
app.py          create_app(settings): FastAPI app whose lifespan starts and stops the runtime
runtime.py      the parts wired together, private, behind the one set of operations every caller uses
ingest.py       the ingest thread: ZeroMQ sockets, the pipeline, every session change
pipeline.py     decode -> validate -> order -> normalise -> context -> record; infer -> publish
session.py      sessions, their context ring and the model that forecasts them
session_status.py    a copy of one session's state and counters, for REST
ring.py         the preallocated (C, N) context
policy.py       gaps, duplicates, out-of-order frames
engine.py       onnxruntime inference of a bundle
bundles.py      loaded bundles and the active one
publisher.py    one forecast to ZeroMQ PUB, the REST snapshot and the WebSocket hub
forecasts.py    the published forecast and the latest one per session
hub.py          WebSocket fan-out with one-forecast slots, and the subscriber limit
recorder.py     every accepted frame to disk on a writer thread
recording_files.py   the recording format and its reader
metrics.py      Prometheus metrics in a registry per server
ratelog.py      rate-limited log lines
(its control-plane errors are in poco_rt.errors, the one error tree)
serve.py        serve(settings): uvicorn in this process (`poco-rt serve`)
http_connections.py  uvicorn's h11 protocol with a header deadline and a connection cap
log_redaction.py     `?token=` values out of uvicorn's log lines
api/            one router per resource; the only place that speaks HTTP
"""
