"""The push path: OpenRouter's terminal-state callbacks, received, checked and turned into polls.

A callback is a hint, never the authority: it makes the job's owner poll that job at
once, and the poll's answer drives the state machine. :mod:`.signature` checks a
delivery, :mod:`.receiver` serves the endpoint, :mod:`.hints` carries a hint to the
instance that owns the job.
"""
