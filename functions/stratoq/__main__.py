import sys

from stratoq.cli import main

sys.exit(main())
