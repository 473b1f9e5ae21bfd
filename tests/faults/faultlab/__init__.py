"""The fault-injection harness: real ``hamq run`` brokers, real clients, faults at exact boundaries.

* :mod:`faultlab.faults`   the fault shim's spec (pause/fail/delay/kill on the Nth write, fsync,
                           rename, ...) and the power-cut model built on its io log
* :mod:`faultlab.group`    a group of brokers on one shared directory, SIGSTOP/SIGCONT, kill -9
* :mod:`faultlab.stomp`    a small blocking STOMP client that puts exact bytes on the wire
* :mod:`faultlab.watcher`  the CONNECT watcher (two brokers answering CONNECT at once)
* :mod:`faultlab.ledger`   ledger producer and consumer, and the checker of the properties
* :mod:`faultlab.scenario` a group under load (producer, consumer, watcher) and the pause/yank failover
* :mod:`faultlab.journal`  journal damage (truncation, bit flips), seals, quarantine
* :mod:`faultlab.lockfile` lock-file tampering (delete, empty file, byte-identical copy)
* :mod:`faultlab.seeds`    seeded randomness that prints its seed and replays with HAMQ_FAULT_SEED

It observes the broker from outside only: STOMP frames, ``/status``, process state, the files
on disk (through ``hamq.store.codec``'s readers) and, where nothing else can tell, log lines.
"""
