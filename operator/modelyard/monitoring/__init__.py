"""What model servers report about their traffic and the operator gathers: the wire format of a
server process's monitoring answer, and the arithmetic both sides share (PSI, live metrics).

Standard library only: the operator image has no numpy.
"""
