"""Exit statuses of the ``shadowcast`` command (documented in docs/cli.md).

=====  =========================================================================
code   meaning
=====  =========================================================================
0      success
1      runtime failure: the command could not finish (store, network, a bug)
2      bad usage or bad input: an option, a settings file or an input file
3      ``shadowcast forecast``: at least one link is at risk (its predicted
       utilisation or upper bound reaches the threshold), for cron and Nagios
=====  =========================================================================
"""

from __future__ import annotations

OK = 0
FAILURE = 1
USAGE = 2
AT_RISK = 3
