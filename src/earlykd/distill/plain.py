"""base: cross-entropy on the prefix only; no teacher. Also trains teachers on full series."""
from .base import Distiller, register


@register
class Base(Distiller):
    name = "base"
    description = "cross-entropy on the prefix only, no teacher"
    needs_teacher = False
