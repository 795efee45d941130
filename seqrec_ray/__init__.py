"""seqrec-ray: behaviour-sequence modelling and recommendation serving on Ray."""

__version__ = "0.1.0"
