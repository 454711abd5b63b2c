"""The error every scene reader raises for a folder it cannot read."""


class SceneFormatError(ValueError):
    """A scene folder does not have the expected layout or contents."""
