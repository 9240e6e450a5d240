"""Offline jobs (PINning now; POCO fine-tuning next) that never disturb the real-time path.

store.py     the SQLite job table every process shares; states and their transitions
runner.py    the runner thread: a bounded pool of worker processes, cancel, recovery at start
worker.py    one job's process: lower priority, its own cores, thread and memory limits
kinds.py     the job kinds: parameters and what a worker runs
pinning.py   the PINning job (models/pinning) on a synthetic or a recorded target
pinning_sweep.py  the PINning sweep job: pVar against p, in the worker or on a Dask cluster
"""
