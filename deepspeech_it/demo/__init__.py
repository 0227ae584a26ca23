"""The demo: Italian sentences and the Common Voice-shaped corpus spoken by espeak-ng."""
