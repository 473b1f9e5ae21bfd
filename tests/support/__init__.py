"""Test support shared by the integration tests, the fault-injection suite and the soak benchmarks.

``support.config`` renders broker.xml files and picks free ports; ``support.brokers``
runs real ``hamq run`` processes and watches them through their status endpoint.
Nothing here imports pytest, so benchmark scripts can use it too.
"""
