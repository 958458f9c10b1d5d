"""The work done after the answer: the slow step and its verifier, the password hasher, the
finish writer, the process lease with its take-over of dead processes' work, and retry pacing."""
