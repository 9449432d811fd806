"""What a job's code raises to fail the job with a readable reason."""


class JobFailed(RuntimeError):
    """A readable reason to fail the job."""
