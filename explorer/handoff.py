"""A latent code chosen on one page and used on another, through this session's state.

The Latent map sends the mean code of a selection; Traverse takes it as its base code, and
Interpolate as its image A or B. Each destination ("slot") holds at most one code, with the
model it belongs to: after the model changes, no page offers it any more.

    handoff.send("traverse", ChosenCode(z, ctx.model_key, "the mean code of 40 images"))
    code = handoff.receive("traverse", ctx.model_key)      # None if none was sent for this model
    if handoff.take_fresh("traverse"): ...                  # once, on the first run after a send

Only this module touches its two session-state keys.
"""
from __future__ import annotations

import dataclasses

import streamlit as st
import torch

SLOTS = ("traverse", "interp_a", "interp_b")
SOURCE = "Latent map selection"        # how the destination pages name a code that came from here
_CODES = "_handoff_codes"              # slot -> ChosenCode
_FRESH = "_handoff_fresh"              # slots sent to since their page last ran


@dataclasses.dataclass(frozen=True)
class ChosenCode:
    z: torch.Tensor              # (1, *latent), on the CPU
    model_key: str               # the model the code belongs to (Context.model_key)
    caption: str                 # what it is, e.g. "the mean code of 40 images selected on the latent map"
    y: int | None = None         # the class it stands for with a conditional model (else None)
    indices: tuple[int, ...] = ()   # the dataset images it came from, where it came from images


def send(slot: str, code: ChosenCode) -> None:
    """Keep ``code`` for the page that reads ``slot``; it replaces what that slot held."""
    if slot not in SLOTS:
        raise ValueError(f"unknown hand-off slot {slot!r}; one of {SLOTS}")
    st.session_state.setdefault(_CODES, {})[slot] = code
    st.session_state[_FRESH] = tuple(sorted({*st.session_state.get(_FRESH, ()), slot}))


def receive(slot: str, model_key: str) -> ChosenCode | None:
    """The code sent to ``slot`` for this model, or None."""
    code = st.session_state.get(_CODES, {}).get(slot)
    return code if code is not None and code.model_key == model_key else None


def take_fresh(slot: str) -> bool:
    """True once after each send to ``slot``: the destination page then switches its widgets to the code."""
    fresh = st.session_state.get(_FRESH, ())
    if slot not in fresh:
        return False
    st.session_state[_FRESH] = tuple(s for s in fresh if s != slot)
    return True
