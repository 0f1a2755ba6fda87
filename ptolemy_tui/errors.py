"""Errors that reach the operator as one line. UsageError exits 2, OperationFailed exits 1."""


class PtolemyError(Exception):
    exit_code = 1


class UsageError(PtolemyError):
    """Bad input from the operator: the message names the problem and the fix."""

    exit_code = 2


class OperationFailed(PtolemyError):
    """The operation ran and failed (a failed container, a bad CAR): exit 1."""

    exit_code = 1
