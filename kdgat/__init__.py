"""kdgat: CAN-bus intrusion detection with graph neural networks."""

__version__ = "0.1.0"
