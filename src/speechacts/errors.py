"""Exceptions for mistakes a user can make; the CLI prints them without a traceback."""


class SpeechactsError(Exception):
    """A user-facing error: the message says what is wrong and what would be right."""


class ConfigError(SpeechactsError):
    """A config file or override is invalid."""


class DataError(SpeechactsError):
    """A data file, seed article or label row is invalid."""


class ModelError(SpeechactsError):
    """A model cannot be found, loaded or used."""


class TrackingError(SpeechactsError):
    """The MLflow tracking store cannot be reached or written."""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM, SIGHUP); unwinds like KeyboardInterrupt, closing runs."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class SweepError(SpeechactsError):
    """A sweep cannot use its study store, or ended without a result."""


class EngineError(SpeechactsError):
    """An engine the job runs on (Spark, Java) is missing or cannot start."""
