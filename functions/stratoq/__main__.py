import sys

from stratoq.cli.main import main

sys.exit(main())
