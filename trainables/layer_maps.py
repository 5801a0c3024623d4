"""Which teacher layers a student layer corresponds to.

Layers are numbered from 1 (layer i is ``hidden_states[i]`` of a Hugging Face model, index 0
being the embeddings). ``ratio = teacher_layers / student_layers`` must be a whole number.

ReptileDistil strategies (Ma et al.), for a 12-layer teacher and a 6-layer student:
``first`` {1..6}, ``last`` {7..12}, ``skip`` {2,4,...,12}, ``both`` {(1,2),(3,4),...,(11,12)}.
"""

from __future__ import annotations

from trainables.errors import UserError, choice_error

STRATEGIES = ("first", "last", "skip", "both")


def _ratio(teacher_layers: int, student_layers: int) -> int:
    if student_layers < 1 or teacher_layers < student_layers or teacher_layers % student_layers:
        raise UserError(
            f"a teacher of {teacher_layers} layers cannot be mapped onto a student of {student_layers}: "
            "the teacher depth must be a multiple of the student depth")
    return teacher_layers // student_layers


def layer_map(strategy: str, teacher_layers: int, student_layers: int) -> dict[int, tuple[int, ...]]:
    """Student layer j -> the teacher layer(s) it is tied to."""
    if strategy not in STRATEGIES:
        raise choice_error("update_strategy", strategy, STRATEGIES)
    r = _ratio(teacher_layers, student_layers)
    out: dict[int, tuple[int, ...]] = {}
    for j in range(1, student_layers + 1):
        if strategy == "first":
            out[j] = (j,)
        elif strategy == "last":
            out[j] = (teacher_layers - student_layers + j,)
        elif strategy == "skip":
            out[j] = (j * r,)
        else:  # both: the whole block of r consecutive teacher layers
            out[j] = tuple(range((j - 1) * r + 1, j * r + 1))
    return out


PKD_MAPS = ("skip", "last")


def pkd_pairs(strategy: str, teacher_layers: int, student_layers: int) -> list[tuple[int, int]]:
    """Patient-KD pairs (student layer, teacher layer) for the student's intermediate layers
    1..L_S-1 (the last layer's output is distilled through the logits, as in Sun et al. 2019):
    PKD-skip ties j to j*r, PKD-last to L_T - L_S + j. A 1-layer student has no pairs."""
    if strategy not in PKD_MAPS:
        raise choice_error("pkd_layer_map", strategy, PKD_MAPS)
    full = layer_map(strategy, teacher_layers, student_layers)
    return [(j, full[j][0]) for j in range(1, student_layers)]
