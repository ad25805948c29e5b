"""`cnnlab doctor`: signal propagation, a range test and paired short trials turned into one
recommendation with its evidence, within a time budget (see cnnlab.doctor.main)."""

from cnnlab.doctor.main import doctor

__all__ = ["doctor"]
