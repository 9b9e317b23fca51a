"""Domain errors raised by services; the API and the console translate them for people."""


class ServiceError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message, fields=None):
        super().__init__(message)
        self.message = message
        self.fields = fields


class Invalid(ServiceError):
    pass


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"

    def __init__(self, message, fields=None, code="conflict"):
        super().__init__(message, fields)
        self.code = code
