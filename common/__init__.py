"""What both laptop halves share (provision: AWS, remote: SSH): errors, CLI
helpers, the laptop's paths, pinned host keys, the state cache, the boto3
client factory and the OpenSSH command line. It imports neither half
(tests/test_layering.py keeps it so); see docs/architecture.md.
"""
