"""Side-by-side benchmarks of hamq, ActiveMQ Classic and coilmq over STOMP.

Run with ``benchmarks/run [--quick] [--only NAME]`` or ``python -m benchmarks``.
Nothing here is imported by the broker; the suite only drives real broker processes.
"""
