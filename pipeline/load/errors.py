"""Errors that carry where in the input they come from: file:document:field: message."""


class ManifestError(Exception):
    """A manifest the API server would refuse. Nothing is applied when one is raised."""

    def __init__(self, source: str, document: int, field: str, message: str):
        self.source = source
        self.document = document
        self.field = field
        self.message = message
        super().__init__(f"{source}:{document}:{field}: {message}")


class ManifestErrors(Exception):
    """Every error found in one load, in input order."""

    def __init__(self, errors: list[ManifestError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class FieldErrors:
    """Collects errors for one document while it is validated."""

    def __init__(self, source: str, document: int):
        self.source = source
        self.document = document
        self.errors: list[ManifestError] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append(ManifestError(self.source, self.document, field, message))
