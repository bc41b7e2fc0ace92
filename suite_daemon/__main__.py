import sys

from suite_daemon.cli import main

sys.exit(main())
