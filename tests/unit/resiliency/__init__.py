"""Unit tests of the resiliency engine: fake clock, fake sleep, no sockets."""
