"""Guidance for the reverse diffusion: anti-penetration guidance and canonical-frame decoding."""

from interhandgen.guidance.apg import AntiPenetrationGuidance, canonical_vertices

__all__ = ["AntiPenetrationGuidance", "canonical_vertices"]
