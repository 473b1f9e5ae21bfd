"""hamq: a STOMP broker built for shared-file-system master/slave high availability."""

__version__ = "1.1.0"
