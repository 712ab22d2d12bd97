import sys

from msli_core.cli import main

sys.exit(main())
