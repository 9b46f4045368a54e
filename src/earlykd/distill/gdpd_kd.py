"""gdpd_kd: GDPD plus Hinton KD, as the authors' release trains it (the paper's "GDPD" column; ICLR 2026).

    loss = GDPD's loss (gdpd/distiller.py) + weight * tau^2 * KL(softmax(t / tau) || softmax(s / tau))
The KD term is on the student's own prefix logits, in both stages, with the same lambda (`weight`) and
tau 2; the paper's loss does not mention it. Identical to `gdpd` with hinton = 1, registered under its
own name so that reports show GDPD alone and GDPD + KD side by side.
"""
from .base import register
from .gdpd import GDPD


@register
class GDPDKD(GDPD):
    name = "gdpd_kd"
    description = "GDPD + weight x Hinton KD, as the authors' release trains it"
    defaults = {**GDPD.defaults, "hinton": 1}
