"""Process limits a sidecar sets for itself at start."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("tether.sidecar")


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the soft limit now.

    A sidecar holds two sockets per proxied connection and distros still start
    processes with a soft limit of 1,024; Go's runtime (and so daprd) raises it the
    same way at start. Where the hard limit is unlimited, 1,048,576 is asked for
    (Linux refuses more than fs.nr_open).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, exc)
            return soft
        log.debug("open-file limit raised from %d to %d", soft, wanted)
        return wanted
    return soft
